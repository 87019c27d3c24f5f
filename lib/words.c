/* Splitting a setting into words, as systemd splits ExecStart= (see
 * words.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "words.h"

size_t words_count(char *const *w) {
        size_t n = 0;

        while (w && w[n])
                n++;
        return n;
}

char **words_free(char **w) {
        for (size_t i = 0; w && w[i]; i++)
                free(w[i]);
        free(w);
        return NULL;
}

static int words_push(char ***w, size_t *n, char *word) {
        char **g = realloc(*w, (*n + 2) * sizeof(**w));

        if (!g)
                return -ENOMEM;
        g[(*n)++] = word;
        g[*n] = NULL;
        *w = g;
        return 0;
}

int words_split(const char *s, char ***ret, const char **why) {
        char **w = NULL, *word = NULL;
        size_t n = 0, len = 0;
        int r;

        *ret = NULL;
        /* a word is never longer than the text: one buffer is enough */
        for (;;) {
                char quote = 0;

                while (*s == ' ' || *s == '\t' || *s == '\n')
                        s++;
                if (!*s)
                        break;
                word = malloc(strlen(s) + 1);
                if (!word)
                        goto nomem;
                len = 0;
                for (; *s; s++) {
                        char ch = *s;

                        if (!quote && (ch == ' ' || ch == '\t' || ch == '\n'))
                                break;
                        if (ch == quote) {
                                quote = 0;
                                continue;
                        }
                        if (!quote && (ch == '"' || ch == '\'')) {
                                quote = ch;
                                continue;
                        }
                        if (ch == '\\' && quote != '\'') {
                                s++;
                                switch (*s) {
                                case 'n':
                                        ch = '\n';
                                        break;
                                case 't':
                                        ch = '\t';
                                        break;
                                case 'r':
                                        ch = '\r';
                                        break;
                                case '\\':
                                case '"':
                                case '\'':
                                case ' ':
                                case ';': /* " ;" starts a comment in the settings */
                                case '#':
                                        ch = *s;
                                        break;
                                case '\0':
                                        *why = "a backslash at the end (nothing to escape)";
                                        r = -EINVAL;
                                        goto fail;
                                default:
                                        *why = "unknown escape (known: \\\\ \\\" \\' \\; \\# \\n \\r \\t and a backslash "
                                               "before a space)";
                                        r = -EINVAL;
                                        goto fail;
                                }
                        }
                        word[len++] = ch;
                }
                if (quote) {
                        *why = quote == '"' ? "a double quote is not closed" : "a single quote is not closed";
                        r = -EINVAL;
                        goto fail;
                }
                word[len] = '\0';
                if (words_push(&w, &n, word) < 0)
                        goto nomem;
                word = NULL;
        }
        if (!w && !(w = calloc(1, sizeof(*w))))
                goto nomem;
        *ret = w;
        return (int) n;
nomem:
        r = -ENOMEM;
fail:
        free(word);
        words_free(w);
        return r;
}

int words_append(char ***w, char **add) {
        size_t n = words_count(*w), k = words_count(add);
        char **g = realloc(*w, (n + k + 1) * sizeof(**w));

        if (!g)
                return -ENOMEM;
        memcpy(g + n, add, k * sizeof(*add));
        g[n + k] = NULL;
        *w = g;
        free(add);
        return 0;
}

void words_print(char *const *w, FILE *f) {
        for (size_t i = 0; w && w[i]; i++) {
                const char *p = w[i];

                bool plain = *p;

                /* quoted when it must be, and when a control character (a
                 * \r the settings' parser would strip at a line's end) is in it */
                for (const char *q = p; *q && plain; q++)
                        plain = !strchr(" \t\n\"'\\;#", *q) && (unsigned char) *q >= 0x20 && *q != 0x7f;
                if (plain) {
                        fprintf(f, " %s", p);
                        continue;
                }
                fputs(" \"", f);
                for (; *p; p++) {
                        if (*p == '\n')
                                fputs("\\n", f);
                        else if (*p == '\t')
                                fputs("\\t", f);
                        else if (*p == '\r')
                                fputs("\\r", f);
                        else {
                                if (*p == '"' || *p == '\\' || *p == ';' || *p == '#')
                                        fputc('\\', f);
                                fputc(*p, f);
                        }
                }
                fputc('"', f);
        }
}
