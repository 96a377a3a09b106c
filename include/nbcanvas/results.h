#ifndef NBCANVAS_RESULTS_H
#define NBCANVAS_RESULTS_H

/*
 * Reading an executed notebook: the outputs as the API's JSON answer, the
 * image outputs as files, and the details of a failed cell. All text that
 * reaches a client has ANSI escapes removed.
 */

#include <jansson.h>
#include <stddef.h>

#include "nbcanvas/tarball.h"

/* A new JSON array of the notebook's code cells with their outputs:
 * [{"index", "cell_type", "execution_count", "outputs"}], text cleaned. */
json_t *results_cells_json(json_t *nb);

/* One output of a cell as the json format has it (new reference), text
 * cleaned: what a streamed output event carries. */
json_t *results_output_json(json_t *out);

/* The image outputs of nb as files named cell<i>_output<j>.<ext> (png,
 * jpg, svg, gif), appended to files (release with tarball_files_release). */
void results_images(struct tar_files *files, json_t *nb);

/* Error details of a failed cell: {"cell", "ename", "evalue",
 * "traceback"} from a job's status (new reference), text cleaned. */
json_t *results_cell_error(json_t *status);

#endif
