// A narrow C face over libyara: its iteration macros and unions do not import into Swift.
#include "CYaraScan.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yara.h>

static pthread_once_t initialized = PTHREAD_ONCE_INIT;
static int initialize_result = ERROR_SUCCESS;

static void initialize(void) { initialize_result = yr_initialize(); }

struct compile_ctx {
    sparc_yara_message_fn fn;
    void *ctx;
    const char *source;
};

static void compiler_message(int level, const char *file, int line, const YR_RULE *rule, const char *message, void *user) {
    (void)rule;
    struct compile_ctx *c = user;
    if (c->fn) c->fn(c->ctx, level == YARA_ERROR_LEVEL_WARNING, file ? file : c->source, line, message);
}

/* The largest rule file an include may pull in. */
#define SPARC_YARA_MAX_INCLUDE (16 << 20)

/*
 * `include "FILE"` in a rule file: libyara would open FILE with fopen, which blocks for ever
 * on a FIFO and reads a device until it ends. This reads only a regular file (opened without
 * blocking, checked with fstat), of at most 16 MiB; a relative name is taken from the
 * including file's directory, as libyara does.
 */
static const char *include_file(const char *name, const char *calling_file, const char *ns, void *user) {
    (void)ns;
    struct compile_ctx *c = user;
    const char *from = calling_file ? calling_file : c->source;
    char path[4096];
    if (name[0] == '/' || !from || !strchr(from, '/')) {
        snprintf(path, sizeof path, "%s", name);
    } else {
        int dir = (int)(strrchr(from, '/') - from);
        snprintf(path, sizeof path, "%.*s/%s", dir, from, name);
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SPARC_YARA_MAX_INCLUDE) {
        close(fd);
        if (c->fn) c->fn(c->ctx, 0, path, 0, "an included rule file must be a regular file of at most 16 MiB");
        return NULL;
    }
    char *text = malloc((size_t)st.st_size + 1);
    size_t done = 0;
    while (text && done < (size_t)st.st_size) {
        ssize_t n = pread(fd, text + done, (size_t)st.st_size - done, (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    close(fd);
    if (!text) return NULL;
    text[done] = 0;
    return text;
}

static void include_free(const char *text, void *user) {
    (void)user;
    free((void *)text);
}

void sparc_yara_rule_identifiers(const sparc_yara_rules *rules, void (*each)(void *ctx, const char *identifier), void *ctx) {
    const YR_RULES *r = (const YR_RULES *)rules;
    const YR_RULE *rule;
    yr_rules_foreach(r, rule) { each(ctx, rule->identifier); }
}

sparc_yara_rules *sparc_yara_compile(const char *const *sources, const char *const *names, int count, const char *ns,
                                     sparc_yara_message_fn on_message, void *ctx, int *errors) {
    *errors = 0;
    pthread_once(&initialized, initialize);
    if (initialize_result != ERROR_SUCCESS) {
        *errors = 1;
        if (on_message) on_message(ctx, 0, "", 0, "libyara could not initialise");
        return NULL;
    }
    YR_COMPILER *compiler = NULL;
    if (yr_compiler_create(&compiler) != ERROR_SUCCESS) {
        *errors = 1;
        if (on_message) on_message(ctx, 0, "", 0, "out of memory creating the rule compiler");
        return NULL;
    }
    struct compile_ctx c = {on_message, ctx, ""};
    yr_compiler_set_callback(compiler, compiler_message, &c);
    yr_compiler_set_include_callback(compiler, include_file, include_free, &c);
    for (int i = 0; i < count && *errors == 0; i++) {
        // Rules from a string carry no file name in libyara's messages: name the source here.
        c.source = names[i];
        *errors += yr_compiler_add_string(compiler, sources[i], ns);
    }
    YR_RULES *rules = NULL;
    if (*errors == 0 && yr_compiler_get_rules(compiler, &rules) != ERROR_SUCCESS) {
        *errors = 1;
        if (on_message) on_message(ctx, 0, "", 0, "out of memory building the rule set");
    }
    yr_compiler_destroy(compiler);
    return (sparc_yara_rules *)rules;
}

void sparc_yara_destroy(sparc_yara_rules *rules) {
    if (rules) yr_rules_destroy((YR_RULES *)rules);
}

int sparc_yara_rule_count(const sparc_yara_rules *rules) {
    const YR_RULES *r = (const YR_RULES *)rules;
    int n = 0;
    const YR_RULE *rule;
    yr_rules_foreach(r, rule) { n++; }
    return n;
}

struct scan_ctx {
    sparc_yara_match_fn on_match;
    sparc_yara_overflow_fn on_overflow;
    void *ctx;
};

static int scan_callback(YR_SCAN_CONTEXT *context, int message, void *data, void *user) {
    struct scan_ctx *s = user;
    if (message == CALLBACK_MSG_TOO_MANY_MATCHES) {
        YR_STRING *string = data;
        // The rule a string belongs to is the one whose strings array holds it.
        const YR_RULE *owner = NULL;
        const YR_RULE *rule;
        yr_rules_foreach(context->rules, rule) {
            const YR_STRING *st;
            yr_rule_strings_foreach(rule, st) {
                if (st == string) owner = rule;
            }
        }
        if (s->on_overflow) s->on_overflow(s->ctx, owner, string->identifier);
        return CALLBACK_CONTINUE;
    }
    if (message != CALLBACK_MSG_RULE_MATCHING) return CALLBACK_CONTINUE;
    YR_RULE *rule = data;
    YR_STRING *string;
    yr_rule_strings_foreach(rule, string) {
        YR_MATCH *match;
        yr_string_matches_foreach(context, string, match) {
            uint64_t offset = (uint64_t)(match->base + match->offset);
            if (s->on_match(s->ctx, rule, string->identifier, offset, (uint32_t)match->match_length)) return CALLBACK_ABORT;
        }
    }
    return CALLBACK_CONTINUE;
}

int sparc_yara_scan(const sparc_yara_rules *rules, const uint8_t *buffer, size_t length, int timeout_seconds,
                    sparc_yara_match_fn on_match, sparc_yara_overflow_fn on_overflow, void *ctx) {
    struct scan_ctx s = {on_match, on_overflow, ctx};
    return yr_rules_scan_mem((YR_RULES *)rules, buffer, length, 0, scan_callback, &s, timeout_seconds);
}

const char *sparc_yara_rule_identifier(const void *rule) { return rule ? ((const YR_RULE *)rule)->identifier : "?"; }

const char *sparc_yara_rule_namespace(const void *rule) { return rule ? ((const YR_RULE *)rule)->ns->name : "default"; }

const char *sparc_yara_rule_meta(const void *rule, const char *key, char *buffer, size_t size) {
    if (!rule) return NULL;
    const YR_RULE *r = rule;
    const YR_META *meta;
    yr_rule_metas_foreach(r, meta) {
        if (strcmp(meta->identifier, key) != 0) continue;
        if (meta->type == META_TYPE_STRING) return meta->string;
        if (meta->type == META_TYPE_INTEGER) {
            snprintf(buffer, size, "%lld", (long long)meta->integer);
            return buffer;
        }
        if (meta->type == META_TYPE_BOOLEAN) return meta->integer ? "true" : "false";
    }
    return NULL;
}

const char *sparc_yara_error_text(int code) {
    switch (code) {
    case ERROR_SUCCESS: return "no error";
    case ERROR_INSUFFICIENT_MEMORY: return "out of memory";
    case ERROR_SCAN_TIMEOUT: return "the scan timed out";
    case ERROR_TOO_MANY_SCAN_THREADS: return "too many scans at once";
    case ERROR_TOO_MANY_MATCHES: return "too many matches";
    case ERROR_CALLBACK_ERROR: return "stopped";
    default: return "libyara error";
    }
}
