/* wasi-demo: labkit's own demo app for wasm32-wasi (WASI preview 1).
 *
 * Same command interface as runwasi's wasi-demo-app, so the labs can use it
 * wherever the journey uses that image:
 *
 *   (none) | daemon          print a short status block every second, forever
 *   echo WORDS...            print WORDS joined by spaces
 *   sleep SECONDS            sleep (fractional seconds allowed)
 *   exit CODE                exit with CODE
 *   write FILE WORDS...      write WORDS joined by spaces to FILE
 *
 * echo/sleep/write print "exiting" on stderr when done; an unknown command
 * prints "unknown command: X" on stderr and exits 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Joins argv[from..argc) with single spaces, like the upstream app. */
static void put_words(FILE *out, int argc, char **argv, int from) {
    for (int i = from; i < argc; i++) {
        if (i > from) fputc(' ', out);
        fputs(argv[i], out);
    }
}

static int done(void) {
    fputs("exiting\n", stderr);
    return 0;
}

/* Prints "what: arg[: detail]" on stderr and returns exit status 1.
 * (fputs, not printf: printf's float support alone would double the module.) */
static int fail3(const char *what, const char *arg, const char *detail) {
    fputs(what, stderr);
    fputs(": ", stderr);
    fputs(arg, stderr);
    if (detail) {
        fputs(": ", stderr);
        fputs(detail, stderr);
    }
    fputc('\n', stderr);
    return 1;
}

static int fail(const char *what, const char *arg) { return fail3(what, arg, NULL); }

/* Parses a non-negative decimal like "2", "0.5" or ".25" into nanoseconds;
 * returns -1 if s is not one. (strtod would pull in ~10 KB of libc.) */
static long long parse_seconds_ns(const char *s) {
    long long whole = 0, frac = 0, scale = 1000000000LL;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (whole > 1000000000LL) return -1; /* ~31 years: clearly a typo */
        whole = whole * 10 + (*s - '0');
    }
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
            if (scale > 1) {
                scale /= 10;
                frac += (*s - '0') * scale;
            }
        }
    }
    if (*s != '\0' || digits == 0) return -1;
    return whole * 1000000000LL + frac;
}

static void sleep_ns(long long ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The daemon loop: a numbered heartbeat, so a log reader can tell the
 * lines apart and see that the module is still running. */
static int daemon_loop(void) {
    for (unsigned long beat = 1;; beat++) {
        char num[24], *p = num + sizeof num;
        *--p = '\0';
        unsigned long n = beat;
        do {
            *--p = (char)('0' + n % 10);
        } while ((n /= 10) != 0);
        fputs("[wasi-demo] heartbeat ", stdout);
        fputs(p, stdout);
        puts(": still running inside a wasm sandbox.");
        puts("[wasi-demo] no kernel of my own, only the WASI calls my host allows.");
        puts("[wasi-demo] stop me with kubectl delete, or ctr task kill.");
        fflush(stdout); /* lines must reach the log live, not at exit */
        sleep_ns(1000000000LL);
    }
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "daemon";

    if (strcmp(cmd, "daemon") == 0) return daemon_loop();

    if (strcmp(cmd, "echo") == 0) {
        put_words(stdout, argc, argv, 2);
        fputc('\n', stdout);
        fflush(stdout);
        return done();
    }

    if (strcmp(cmd, "sleep") == 0) {
        if (argc < 3) return fail("usage", "sleep SECONDS");
        long long ns = parse_seconds_ns(argv[2]);
        if (ns < 0) return fail("invalid seconds", argv[2]);
        sleep_ns(ns);
        return done();
    }

    if (strcmp(cmd, "exit") == 0) {
        if (argc < 3) return fail("usage", "exit CODE");
        char *end = NULL;
        long code = strtol(argv[2], &end, 10);
        if (end == argv[2] || *end != '\0') return fail("invalid exit code", argv[2]);
        fflush(stdout);
        exit((int)code);
    }

    if (strcmp(cmd, "write") == 0) {
        if (argc < 3) return fail("usage", "write FILE WORDS...");
        FILE *f = fopen(argv[2], "w");
        if (f == NULL) return fail3("cannot open", argv[2], strerror(errno));
        put_words(f, argc, argv, 3);
        if (fclose(f) != 0) return fail3("cannot write", argv[2], strerror(errno));
        return done();
    }

    return fail("unknown command", cmd);
}
