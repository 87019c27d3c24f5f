/* Command lines and KEY=VALUE lists split as a systemd unit file splits
 * ExecStart=: words apart by white space, "double" or 'single' quotes
 * keep white space in a word, a backslash escapes the next character
 * (\n, \r and \t are a newline, a carriage return and a tab; \; and \# are ; and #, which the
 * settings' parser would take for a comment). No shell, no variables. */
#pragma once

#include <stddef.h>
#include <stdio.h>

/* Splits s into a NULL-terminated array of words (each freed by
 * words_free()). Returns the number of words, or -EINVAL with *why
 * saying what is wrong (an open quote, a lone backslash), or -ENOMEM. */
int words_split(const char *s, char ***ret, const char **why);
char **words_free(char **w);
size_t words_count(char *const *w);
/* Appends the words of add to *w (both NULL-terminated); takes add's
 * strings. */
int words_append(char ***w, char **add);
/* Prints each word after a space, quoted where it must be, so that
 * words_split() reads the line back as the same words. */
void words_print(char *const *w, FILE *f);
