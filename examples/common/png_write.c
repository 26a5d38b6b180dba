/* PNG writing (png_write.h): libpng's simplified write API into a temporary file created
 * beside the destination, flushed to disk, then renamed over it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "png_write.h"

#ifdef CLG_EXAMPLES_HAVE_PNG
#include <png.h>

bool png_write_supported(void) {
    return true;
}

/* Encode into f (already open); false with a message on failure. */
static bool encode(FILE *f, const uint8_t *rgb, int width, int height, char *err, size_t err_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_stdio(&image, f, 0, rgb, (png_int_32)(3 * width), NULL)) {
        snprintf(err, err_size, "libpng: %s", image.message);
        png_image_free(&image);
        return false;
    }
    return true;
}

bool png_write_rgb(const char *path, const uint8_t *rgb, int width, int height, char *err,
                   size_t err_size) {
    if (!path || !rgb || width < 1 || height < 1) {
        snprintf(err, err_size, "png_write_rgb: no path or pixels, or an empty image");
        return false;
    }
    /* The temporary file lives in the destination's folder so that rename() is atomic. */
    size_t n = strlen(path) + sizeof ".tmp-XXXXXX";
    char *tmp = malloc(n);
    if (!tmp) {
        snprintf(err, err_size, "%s: out of memory", path);
        return false;
    }
    snprintf(tmp, n, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, err_size, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        return false;
    }
    /* mkstemp makes the file private (0600); give the image the mode a plain fopen would */
    mode_t mask = umask(0);
    umask(mask);
    FILE *f = fchmod(fd, 0666 & ~mask) == 0 ? fdopen(fd, "wb") : NULL;
    char why[256] = "";
    bool ok = f != NULL;
    if (!ok) snprintf(why, sizeof why, "%s", strerror(errno));
    if (ok) ok = encode(f, rgb, width, height, why, sizeof why);
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
        snprintf(why, sizeof why, "%s", strerror(errno));
        ok = false;
    }
    int closed = f ? fclose(f) : close(fd);
    if (closed != 0 && ok) {
        snprintf(why, sizeof why, "%s", strerror(errno));
        ok = false;
    }
    if (ok && rename(tmp, path) != 0) {
        snprintf(why, sizeof why, "cannot rename the temporary file over it: %s", strerror(errno));
        ok = false;
    }
    if (!ok) {
        remove(tmp);
        snprintf(err, err_size, "%s: %s", path, why);
    }
    free(tmp);
    return ok;
}

#else

bool png_write_supported(void) {
    return false;
}

bool png_write_rgb(const char *path, const uint8_t *rgb, int width, int height, char *err,
                   size_t err_size) {
    (void)rgb;
    (void)width;
    (void)height;
    snprintf(err, err_size,
             "%s: this build has no PNG support (libpng was not found when it was configured; "
             "on Debian: apt-get install libpng-dev, then reconfigure)",
             path ? path : "(null)");
    return false;
}

#endif
