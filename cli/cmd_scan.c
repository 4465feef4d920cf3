/*
 * cmd_scan.c - "scanrelay scan FILE|-": scan one RFC 5322 message offline
 * with the configured engine, limits and actions, and print the verdict.
 *
 * Loads the signature databases of virus.database_directory (or -d DIR),
 * reads the message from FILE or standard input, runs scan_message() (the
 * daemon's code path) and prints the verdict, the action the daemon would
 * take, the deciding rule, the header fields it would add, each MIME part
 * (decoded name, type, size), every finding with its checker, rule, kind,
 * action and location, and the limits hit. -j prints one JSON object
 * instead ("rule", "checker"; each finding with "checker", "rule", "kind",
 * "name", "location", "part", "action", and "score" when it has one). -r N gives the recipient count for the recipients
 * rule; -s SENDER and -R RCPT (repeatable) the envelope the policy rules
 * (rule "NAME" { }) see: every rule that matched is a finding (checker
 * policy) with where it matched.
 *
 * "scanrelay rules test [-s SENDER] [-R RCPT]... FILE|-" runs the policy
 * rules alone, without acting (no hit counts), and prints each rule that
 * matches, its action and where; exit 0 none matched, 1 some did.
 * "scanrelay rules" asks the running daemon for its loaded rules and
 * their hit counts.
 *
 * Exit status: 0 clean, 1 flagged (virus, encrypted, limit), 2 error (no
 * engine, unreadable message, or a part that could not be scanned).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "engine.h"
#include "mime.h"
#include "policy.h"
#include "scan.h"
#include "xmalloc.h"

int cmd_scan(struct cli_opts *o, int argc, char **argv);
int cmd_rules(struct cli_opts *o, int argc, char **argv);

static void
scan_usage(void)
{
    fprintf(stderr, "usage: scanrelay [-c FILE] [-j] scan [-d DBDIR] [-r NRCPTS] [-s SENDER] "
                    "[-R RCPT]... FILE|-\n"
                    "       scanrelay [-c FILE] rules [test [-s SENDER] [-R RCPT]... FILE|-]\n");
}

/* A JSON string (invalid UTF-8 as U+FFFD), or null. */
static void
jstr(FILE *f, const char *s)
{
    if (s == NULL)
        fputs("null", f);
    else
        cli_put_json(f, s);
}

static void
print_json(FILE *f, const char *file, const struct scan_result *r)
{
    fputs("{\"file\":", f);
    jstr(f, file);
    fprintf(f, ",\"verdict\":\"%s\",\"result\":\"%s\",\"action\":\"%s\",\"virus\":",
            scan_kind_name(r->kind), r->result, sr_action_name(r->action));
    jstr(f, r->virus);
    fputs(",\"rule\":", f);
    jstr(f, r->rule);
    fputs(",\"checker\":", f);
    jstr(f, r->checker);
    if (r->has_score)
        fprintf(f, ",\"score\":%.2f", r->score);
    fputs(",\"location\":", f);
    jstr(f, r->location);
    fputs(",\"reason\":", f);
    jstr(f, r->reason);
    fputs(",\"headers\":[", f);
    for (size_t i = 0; i < r->nheaders; i++) {
        fputs(i ? "," : "", f);
        jstr(f, r->headers[i]);
    }
    fputs("],\"parts\":[", f);
    for (size_t i = 0; i < r->nparts; i++) {
        const struct scan_part *p = &r->parts[i];
        fprintf(f, "%s{\"index\":%d,\"depth\":%d,\"path\":", i ? "," : "", p->index, p->depth);
        jstr(f, p->path);
        fputs(",\"filename\":", f);
        jstr(f, p->filename);
        fputs(",\"content_type\":", f);
        jstr(f, p->content_type);
        fprintf(f,
                ",\"size\":%lld,\"encoded_size\":%lld,\"decode_error\":%s,\"embedded\":%s,"
                "\"verdict\":\"%s\"}",
                (long long)p->size, (long long)p->encoded_size, p->decode_error ? "true" : "false",
                p->embedded ? "true" : "false", scan_kind_name(p->kind));
    }
    fputs("],\"findings\":[", f);
    for (size_t i = 0; i < r->nfindings; i++) {
        const struct scan_finding *x = &r->findings[i];
        fprintf(f, "%s{\"checker\":", i ? "," : "");
        jstr(f, x->checker);
        fputs(",\"rule\":", f);
        jstr(f, x->rule);
        fprintf(f, ",\"kind\":\"%s\",\"name\":", scan_kind_name(x->kind));
        jstr(f, x->name);
        fputs(",\"location\":", f);
        jstr(f, x->location);
        fprintf(f, ",\"part\":%d,\"action\":\"%s\"", x->part, sr_action_name(x->action));
        if (x->has_score)
            fprintf(f, ",\"score\":%.2f", x->score);
        if (x->kind == SCAN_LIMIT)
            fprintf(f, ",\"value\":%lld,\"limit\":%lld", (long long)x->value, (long long)x->limit);
        fputc('}', f);
    }
    fputs("],\"limits\":[", f);
    int first = 1;
    for (size_t i = 0; i < r->nfindings; i++) {
        if (r->findings[i].kind != SCAN_LIMIT)
            continue;
        fputs(first ? "" : ",", f);
        jstr(f, r->findings[i].name);
        first = 0;
    }
    fprintf(f,
            "],\"findings_dropped\":%zu,\"expanded_bytes\":%lld,\"archive_files\":%lld,"
            "\"archive_depth\":%lld,\"elapsed\":%.6f}\n",
            r->findings_dropped, (long long)r->expanded, (long long)r->archive_files,
            (long long)r->archive_depth, r->elapsed);
}

static void
print_text(FILE *f, const char *file, const struct scan_result *r)
{
    fprintf(f, "%s: %s (action %s)\n", file, scan_kind_name(r->kind), sr_action_name(r->action));
    if (r->reason)
        fprintf(f, "reason: %s\n", r->reason);
    if (r->rule)
        fprintf(f, "rule: %s (checker %s)\n", r->rule, r->checker ? r->checker : "?");
    for (size_t i = 0; i < r->nheaders; i++)
        fprintf(f, "%s\n", r->headers[i]);
    fprintf(f, "parts:\n");
    for (size_t i = 0; i < r->nparts; i++) {
        const struct scan_part *p = &r->parts[i];
        fprintf(f, "  %3d  %-28s %10lld bytes  %s%s%s%s\n", p->index, p->content_type,
                (long long)p->size, p->filename ? p->filename : (p->path ? p->path : "-"),
                p->decode_error ? "  (decode error)" : "", p->embedded ? "  (embedded)" : "",
                p->kind != SCAN_CLEAN ? "  <-" : "");
    }
    if (r->nfindings)
        fprintf(f, "findings:\n");
    for (size_t i = 0; i < r->nfindings; i++) {
        const struct scan_finding *x = &r->findings[i];
        const char *loc = x->location ? x->location : "message";
        if (x->kind == SCAN_VIRUS)
            fprintf(f, "  %s: %s", loc, x->name);
        else if (x->kind == SCAN_LIMIT)
            fprintf(f, "  %s: limit %s %lld > %lld", loc, x->name, (long long)x->value,
                    (long long)x->limit);
        else
            fprintf(f, "  %s: %s (%s)", loc, scan_kind_name(x->kind), x->name ? x->name : "");
        if (x->has_score)
            fprintf(f, " score %.2f", x->score);
        fprintf(f, " [checker %s, rule %s, action %s]%s\n", x->checker ? x->checker : "?",
                x->rule ? x->rule : "?", sr_action_name(x->action),
                (long)i == r->deciding ? " <- deciding" : "");
    }
    int nl = 0;
    for (size_t i = 0; i < r->nfindings; i++)
        nl += r->findings[i].kind == SCAN_LIMIT;
    if (nl) {
        fprintf(f, "limits hit:\n");
        for (size_t i = 0; i < r->nfindings; i++) {
            const struct scan_finding *x = &r->findings[i];
            if (x->kind == SCAN_LIMIT)
                fprintf(f, "  %s: %s %lld > %lld (action %s)\n", x->location, x->name,
                        (long long)x->value, (long long)x->limit, sr_action_name(x->action));
        }
    }
    if (r->findings_dropped)
        fprintf(f, "(%zu more findings not listed)\n", r->findings_dropped);
    fprintf(f, "archives: %lld files, depth %lld; %lld bytes decoded and expanded; %.3f s\n",
            (long long)r->archive_files, (long long)r->archive_depth, (long long)r->expanded,
            r->elapsed);
}

/* "rules test": the policy findings alone. */
static int
print_rules(FILE *f, const char *file, const struct scan_result *r)
{
    int n = 0;
    for (size_t i = 0; i < r->nfindings; i++) {
        const struct scan_finding *x = &r->findings[i];
        if (x->kind != SCAN_POLICY || x->checker == NULL || strcmp(x->checker, "policy") != 0)
            continue;
        if (n++ == 0)
            fprintf(f, "%s: rules matched:\n", file);
        fprintf(f, "  %s: %s\n", x->rule ? x->rule : "?", x->location ? x->location : "message");
    }
    if (n == 0)
        fprintf(f, "%s: no rule matched\n", file);
    return n;
}

static int run_scan(struct cli_opts *o, int argc, char **argv, int rules_test);

int
cmd_rules(struct cli_opts *o, int argc, char **argv)
{
    if (argc == 1)
        return cli_daemon_request(o, "rules");
    if (strcmp(argv[1], "test") == 0)
        return run_scan(o, argc - 1, argv + 1, 1);
    scan_usage();
    return 2;
}

int
cmd_scan(struct cli_opts *o, int argc, char **argv)
{
    return run_scan(o, argc, argv, 0);
}

static int
run_scan(struct cli_opts *o, int argc, char **argv, int rules_test)
{
    struct sr_config_virus vc = o->cfg->virus;
    const char *file = NULL;
    struct sr_engine *e;
    struct scan_result res;
    char err[1024];
    int nrcpts = 0, fd, rc;
    const char **rcpts = xcalloc((size_t)argc + 1, sizeof(char *));
    struct policy_run run = {NULL, "", rcpts, 0, rules_test};
    struct scan_checker chk = {"policy", policy_check, &run};
    struct scan_opts sopts = {&chk, 1, NULL, 0};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
            vc.database_directory = argv[++i];
        } else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            nrcpts = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
            run.sender = argv[++i];
        } else if (strcmp(argv[i], "-R") == 0 && i + 1 < argc) {
            rcpts[run.nrcpts++] = argv[++i];
        } else if (file == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
            file = argv[i];
        } else {
            scan_usage();
            free(rcpts);
            return 2;
        }
    }
    if (file == NULL) {
        scan_usage();
        free(rcpts);
        return 2;
    }
    if (policy_attach(o->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "scanrelay: %s\n", err);
        free(rcpts);
        return 2;
    }
    run.policy = policy_of(o->cfg);
    if (nrcpts == 0)
        nrcpts = (int)run.nrcpts;
    if (vc.database_directory == o->cfg->virus.database_directory) {
        /* No -d: the same database the daemon would use. */
        engine_fallback_database(&o->cfg->virus, o->cfg->path != NULL,
                                 SCANRELAY_SOURCE_DIR "/share/signatures");
        vc.database_directory = o->cfg->virus.database_directory;
    }

    /*
     * Engine and message.
     */
    if ((e = engine_load(&vc, err, sizeof(err))) == NULL) {
        fprintf(stderr, "scanrelay: %s\n", err);
        free(rcpts);
        return 2;
    }
    if (strcmp(file, "-") == 0) {
        fd = STDIN_FILENO;
    } else if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "scanrelay: %s: %s\n", file, strerror(errno));
        engine_unref(e);
        free(rcpts);
        return 2;
    }
    mime_global_init();

    /*
     * Scan and tell.
     */
    rc = scan_message_fd_opts(e, o->cfg, fd, nrcpts, &sopts, &res);
    if (fd != STDIN_FILENO)
        close(fd);
    if (rc < 0) {
        fprintf(stderr, "scanrelay: %s: out of memory\n", file);
        rc = 2;
    } else {
        if (rules_test)
            rc = print_rules(stdout, file, &res) > 0;
        else if (o->json)
            print_json(stdout, file, &res);
        else
            print_text(stdout, file, &res);
        if (!rules_test)
            rc = res.kind == SCAN_CLEAN ? 0 : res.kind == SCAN_ERROR ? 2 : 1;
    }
    fflush(stdout);
    scan_result_free(&res);
    engine_unref(e);
    mime_global_shutdown();
    free(rcpts);
    return rc;
}
