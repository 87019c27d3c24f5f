/* libFuzzer target for the settings file: any text through daemon/config's
 * parsing and validation, and the effective settings printed back. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

#define PATH "fuzz.ini"

#define check(cond)                                                                                    \
        do {                                                                                           \
                if (!(cond)) {                                                                         \
                        fprintf(stderr, "fuzz_config: %s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                                #cond);                                                                \
                        abort();                                                                       \
                }                                                                                      \
        } while (0)

/* config_load refuses a file with a NUL byte before it reaches the parser,
 * and a file larger than this: the string parser never sees either. */
#define MAX_INPUT (1024 * 1024)

/* TCPD_FUZZ_REPRINT=1 also checks what tests/unit/test_config.c checks for
 * one file: the printed settings load again, without errors, and print the
 * same. Off by default; see README.md. */
static bool reprint;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        const char *e = getenv("TCPD_FUZZ_REPRINT");

        reprint = e && streq(e, "1");
        return 0;
}

static char *print_to_string(const struct config *c) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        check(f);
        config_print(c, f);
        check(fclose(f) == 0);
        check(out && strlen(out) == len);
        return out;
}

/* Each kept message must name the file, so an admin knows where to look. */
static void check_errors(const struct config_errors *errs) {
        check(errs->n <= CONFIG_MAX_ERRORS && errs->n <= errs->total);
        check(errs->n == errs->total || errs->n == CONFIG_MAX_ERRORS);
        for (size_t i = 0; i < errs->n; i++) {
                check(errs->msg[i]);
                check(strncmp(errs->msg[i], PATH, strlen(PATH)) == 0);
                check(errs->msg[i][strlen(PATH)] == ':');
        }
}

static void check_reprint(const char *printed) {
        struct config_errors errs = { 0 };
        struct config *again = NULL;
        char *out;
        int r;

        r = config_load_string(PATH, printed, &again, &errs);
        for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "fuzz_config: printed settings: %s\n", errs.msg[i]);
        if (r < 0)
                fprintf(stderr, "fuzz_config: printed settings were:\n%s", printed);
        check(r == 0 && errs.total == 0);
        out = print_to_string(again);
        /* the first line names the source, the rest must agree */
        check(strcmp(strchr(out, '\n'), strchr(printed, '\n')) == 0);
        free(out);
        config_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct config_errors errs = { 0 };
        struct config *c = (struct config *) 1;
        char *text;
        int r;

        if (size > MAX_INPUT || memchr(data, 0, size))
                return -1; /* not a settings file: keep it out of the corpus */

        text = malloc(size + 1);
        check(text);
        memcpy(text, data, size);
        text[size] = 0;

        r = config_load_string(PATH, text, &c, &errs);
        if (r == 0) {
                char *printed;

                check(c != NULL && c != (struct config *) 1);
                check(errs.total == 0 && errs.n == 0);
                check(c->path && streq(c->path, PATH));
                printed = print_to_string(c);
                if (reprint)
                        check_reprint(printed);
                free(printed);
        } else {
                check(c == NULL);
                /* out of memory is the one failure without a message */
                check(r == -EINVAL || r == -ENOMEM);
                check(r == -ENOMEM || errs.total >= 1);
        }
        check_errors(&errs);

        config_free(r == 0 ? c : NULL);
        config_errors_clear(&errs);
        check(errs.n == 0 && errs.total == 0);
        free(text);
        return 0;
}
