#ifndef SPARC_CNCURSES_SHIM_H
#define SPARC_CNCURSES_SHIM_H
/* SwiftPM drops pkg-config's -D_XOPEN_SOURCE: ask for the wide API explicitly. */
#define NCURSES_WIDECHAR 1
#include <locale.h>
#include <wchar.h>
#include <ncurses.h>

/* Macros and globals Swift cannot import (or rejects as not concurrency-safe). */
static inline WINDOW *sparc_stdscr(void) { return stdscr; }
static inline int sparc_lines(void) { return LINES; }
static inline int sparc_cols(void) { return COLS; }
static inline int sparc_key_f(int n) { return KEY_F(n); }
static inline attr_t sparc_a_bold(void) { return A_BOLD; }
static inline attr_t sparc_a_reverse(void) { return A_REVERSE; }
static inline attr_t sparc_a_dim(void) { return A_DIM; }
static inline attr_t sparc_a_underline(void) { return A_UNDERLINE; }
static inline attr_t sparc_color_pair(int n) { return COLOR_PAIR(n); }
static inline void sparc_getmaxyx(WINDOW *w, int *y, int *x) { getmaxyx(w, *y, *x); }
static inline mmask_t sparc_all_mouse_events(void) { return ALL_MOUSE_EVENTS; }
static inline mmask_t sparc_button1_clicked(void) { return BUTTON1_CLICKED | BUTTON1_PRESSED; }
/* The wheel, as ncurses reports it (buttons 4 and 5 pressed). */
static inline mmask_t sparc_wheel_up(void) { return BUTTON4_PRESSED; }
#if NCURSES_MOUSE_VERSION > 1
static inline mmask_t sparc_wheel_down(void) { return BUTTON5_PRESSED; }
#else
static inline mmask_t sparc_wheel_down(void) { return 0; }
#endif
#endif
