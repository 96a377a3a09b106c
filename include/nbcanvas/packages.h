#ifndef NBCANVAS_PACKAGES_H
#define NBCANVAS_PACKAGES_H

/*
 * Packages at run time, without a network in the sandbox: a request's
 * requirement specifiers are checked here (a strict subset of PEP 508:
 * a name, extras, version clauses, a marker; never a URL, a path or an
 * option), resolved with their dependencies on the host by pip itself
 * (`pip download --only-binary=:all:` for the sandbox's interpreter and
 * platform, run as an unprivileged user with a timeout) against
 * package_index_url and/or wheelhouse_dir, checked (wheels are untrusted
 * archives), and kept in a content-addressed, size-capped wheel cache, so
 * that a set already resolved is answered without asking the index again.
 * The wheels then travel with the job and the sandbox installs them with
 * `pip install --no-index` into the sandbox's working folder.
 *
 * Also here: the `%pip install ...` lines that models write, read into
 * the request's packages before execution.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/config.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/err.h"
#include "nbcanvas/tarball.h"

#define PACKAGES_MAX 32      /* requirements in one request */
#define PACKAGE_SPEC_MAX 200 /* bytes of one requirement */
#define PACKAGES_WHEEL_DIR ".nbcanvas/wheels/" /* in the job tar */

/* True when the config names a package source. */
bool packages_source_set(const struct config *cfg);

/* The length of the project name spec starts with. */
size_t packages_name_len(const char *spec);

/* True when spec is a requirement this service passes to pip; otherwise
 * why (a short phrase) goes to why. */
bool packages_spec_ok(const char *spec, char *why, size_t why_len);

/* Checks a request's "packages" (a JSON list of strings) and appends each
 * to *out (a JSON array, created when NULL). ERR_INVALID names the field
 * and the bad entry; so does any use when no package source is set. */
int packages_parse(json_t **out, json_t *list, const struct config *cfg,
                   struct err *err);

/* Rewrites the `%pip install`, `!pip install` and `!python -m pip install`
 * lines of notebook's code cells whose every word is a quiet flag or a
 * requirement: their requirements are appended to *packages (a JSON
 * array, created when NULL), and the line prints a note instead. With no
 * package source, such a line raises an error that says how to turn
 * packages on. Other lines are left as they are. */
void packages_from_magics(json_t *notebook, json_t **packages,
                          const struct config *cfg);

struct packages;

/* The wheel cache and fetcher for cfg (borrowed); NULL when neither
 * package_index_url nor wheelhouse_dir is set. d (borrowed, may be NULL)
 * is asked for the notebook image's label org.nbcanvas.python-packages
 * (what it has installed, set by scripts/build-images.sh): wheels of
 * those projects are not sent unless a request names them. */
struct packages *packages_new(const struct config *cfg, struct docker *d);
void packages_free(struct packages *p);

/* The wheels for requirements (a JSON array of checked strings) and
 * their dependencies, appended to wheels as PACKAGES_WHEEL_DIR<file>.
 * ERR_PACKAGE (422 package_unavailable) names a requirement no wheel
 * meets or a wheel that was refused; ERR_INDEX (503 index_unavailable)
 * when the index does not answer and the set is not cached. */
int packages_fetch(struct packages *p, json_t *requirements,
                   struct tar_files *wheels, struct err *err);

struct packages_stats {
    long hits, misses, errors;
    long long bytes; /* in the cache */
};
void packages_stats(struct packages *p, struct packages_stats *out);

#endif
