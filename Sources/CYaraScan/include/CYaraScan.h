#ifndef SPARC_CYARASCAN_H
#define SPARC_CYARASCAN_H

#include <stddef.h>
#include <stdint.h>

/// A compiled YARA rule set (libyara's YR_RULES), opaque to Swift.
typedef struct sparc_yara_rules sparc_yara_rules;

/// A compiler message: is_warning 0 for an error, the source's name, its line and the text.
typedef void (*sparc_yara_message_fn)(void *ctx, int is_warning, const char *source, int line, const char *message);

/// Compiles `count` rule sources (each with a name for messages) into `ns` (NULL: YARA's
/// `default`); NULL and the number of errors in *errors when any source has an error.
/// Safe from any thread.
sparc_yara_rules *sparc_yara_compile(const char *const *sources, const char *const *names, int count, const char *ns,
                                     sparc_yara_message_fn on_message, void *ctx, int *errors);

void sparc_yara_destroy(sparc_yara_rules *rules);

/// The number of rules in the set.
int sparc_yara_rule_count(const sparc_yara_rules *rules);

/// Calls `each` with the identifier of every rule in the set.
void sparc_yara_rule_identifiers(const sparc_yara_rules *rules, void (*each)(void *ctx, const char *identifier), void *ctx);

/// One match: the rule (an opaque handle for sparc_yara_rule_*), the string's identifier,
/// the offset in the scanned buffer and the match's length. Return non-zero to stop.
typedef int (*sparc_yara_match_fn)(void *ctx, const void *rule, const char *string_id, uint64_t offset, uint32_t length);

/// A string of `rule` matched more often than libyara keeps; its further matches are dropped.
typedef void (*sparc_yara_overflow_fn)(void *ctx, const void *rule, const char *string_id);

/// Scans a buffer (several threads may scan with one rule set at once): 0 on success, else
/// libyara's error code (see sparc_yara_error_text).
int sparc_yara_scan(const sparc_yara_rules *rules, const uint8_t *buffer, size_t length, int timeout_seconds,
                    sparc_yara_match_fn on_match, sparc_yara_overflow_fn on_overflow, void *ctx);

const char *sparc_yara_rule_identifier(const void *rule);
const char *sparc_yara_rule_namespace(const void *rule);
/// A string or integer (as text in `buffer`) metadata value of the rule, NULL when it has none.
const char *sparc_yara_rule_meta(const void *rule, const char *key, char *buffer, size_t size);

/// A one-line description of a libyara error code.
const char *sparc_yara_error_text(int code);

#endif
