/* Runs a fuzz target over files (kept crashers and seeds) without
 * libFuzzer, so any build (gcc, ASan) replays them as a plain test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    int i, n = 0;

    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        unsigned char *data;
        long len;

        if (!f) {
            perror(argv[i]);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        len = ftell(f);
        fseek(f, 0, SEEK_SET);
        data = malloc((size_t)len + 1);
        if (fread(data, 1, (size_t)len, f) != (size_t)len) {
            perror(argv[i]);
            return 1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(data, (size_t)len);
        free(data);
        n++;
    }
    printf("%d passed, 0 failed\n", n);
    return 0;
}
