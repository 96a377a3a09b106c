# The R kernel's launcher: a pool's sandbox (NBCANVAS_PRELOAD=1) attaches
# the common libraries before it answers, so a render pays for none of
# them; then IRkernel runs on the connection file the relay made.
args <- commandArgs(trailingOnly = TRUE)
if (Sys.getenv("NBCANVAS_PRELOAD") == "1") {
    suppressPackageStartupMessages({
        library(ggplot2)
        library(dplyr)
        library(tidyr)
        library(readr)
    })
}
IRkernel::main(args[[1]])
