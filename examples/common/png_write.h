/* Writing 8-bit RGB PNG images through libpng, atomically: the image goes to a temporary file
 * next to the destination, which is renamed over it only once complete, so a failure never
 * leaves a half-written PNG (nor harms an older file of that name). Used by the saliency maps
 * of cnn_mnist; without libpng at build time every write fails and says so. */
#ifndef CLG_EXAMPLES_PNG_WRITE_H
#define CLG_EXAMPLES_PNG_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether this build can write PNGs (libpng was found when it was configured). */
bool png_write_supported(void);

/* Write width x height pixels of rgb (row-major, 3 bytes per pixel, borrowed) to path.
 * Returns false on failure with a message naming the path in err (err_size bytes). */
bool png_write_rgb(const char *path, const uint8_t *rgb, int width, int height, char *err,
                   size_t err_size);

#endif
