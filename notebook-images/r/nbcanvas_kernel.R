# The R kernel's launcher: a pool's sandbox (NBCANVAS_PRELOAD=1) attaches
# the common libraries before it answers, so a render pays for none of
# them; then IRkernel runs on the connection file the relay made.
#
# It also attaches "nbcanvas", which holds nbcanvas_sql_rows(): a %%sql
# cell's rows as a data.frame. The sandbox has no network and never sees a
# database: the service ran the cell's query before the notebook started
# and placed its rows in the working folder (src/sql_cells.c); the service
# sends such a cell to this kernel as a call of this function
# (src/kernel_job.c), and the notebook keeps the cell as it was written.
args <- commandArgs(trailingOnly = TRUE)

local({
    # one column of the rows file as an R vector, by its Table Schema type
    as_column <- function(values, field) {
        missing <- vapply(values, is.null, logical(1))
        if (any(vapply(values, function(v) is.list(v), logical(1)))) {
            # JSON objects and arrays: kept as their JSON text
            return(vapply(values, function(v) {
                if (is.null(v)) NA_character_
                else as.character(jsonlite::toJSON(v, auto_unbox = TRUE))
            }, character(1)))
        }
        values[missing] <- NA
        v <- unlist(values, use.names = FALSE)
        if (is.null(v)) v <- logical(0)
        type <- if (is.null(field$type)) "string" else field$type
        switch(type,
            integer = if (all(is.na(v) | abs(as.numeric(v)) <= .Machine$integer.max))
                as.integer(v) else as.numeric(v),
            number = as.numeric(v),
            boolean = as.logical(v),
            datetime = as.POSIXct(sub("Z$", "", sub("T", " ", v)), tz = "UTC"),
            date = as.Date(substr(v, 1, 10)),
            as.character(v))
    }
    nbcanvas <- new.env()
    nbcanvas$nbcanvas_sql_rows <- function(path) {
        if (!file.exists(path))
            stop("no rows for this query: %%sql cells run through the nbcanvas ",
                 "service, which runs the query first", call. = FALSE)
        result <- jsonlite::fromJSON(path, simplifyVector = FALSE)
        fields <- result$schema$fields
        columns <- lapply(seq_along(fields), function(i)
            as_column(lapply(result$rows, function(r) r[[i]]), fields[[i]]))
        names(columns) <- vapply(fields, function(f) f$name, character(1))
        as.data.frame(columns, stringsAsFactors = FALSE, check.names = FALSE)
    }
    attach(nbcanvas, name = "nbcanvas", warn.conflicts = FALSE)
})

if (Sys.getenv("NBCANVAS_PRELOAD") == "1") {
    suppressPackageStartupMessages({
        library(ggplot2)
        library(dplyr)
        library(tidyr)
        library(readr)
    })
}
IRkernel::main(args[[1]])
