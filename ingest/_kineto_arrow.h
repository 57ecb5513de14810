/* The Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html): the
 * two structs, their release callbacks and the PyCapsule destructors, for _kineto_scan.c. */
#ifndef TRACEHOUSE_KINETO_ARROW_H
#define TRACEHOUSE_KINETO_ARROW_H
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef NOMEM
#define NOMEM (-2)
#endif

struct ArrowSchema {
    const char *format, *name, *metadata;
    int64_t flags, n_children;
    struct ArrowSchema **children, *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};
struct ArrowArray {
    int64_t length, null_count, offset, n_buffers, n_children;
    const void **buffers;
    struct ArrowArray **children, *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

static void release_schema(struct ArrowSchema *s) {
    for (int64_t i = 0; i < s->n_children; i++) {
        if (s->children[i] && s->children[i]->release) s->children[i]->release(s->children[i]);
        free(s->children[i]);
    }
    free(s->children);
    s->release = NULL;
}

static void release_array(struct ArrowArray *a) {
    for (int64_t i = 0; i < a->n_children; i++) {
        if (a->children[i] && a->children[i]->release) a->children[i]->release(a->children[i]);
        free(a->children[i]);
    }
    for (int64_t i = 0; a->buffers && i < a->n_buffers; i++) free((void *)a->buffers[i]);
    free(a->buffers);
    free(a->children);
    a->release = NULL;
}

static int64_t null_count(const uint8_t *valid, int64_t rows) {
    int64_t set = 0;
    for (int64_t i = 0; i < rows; i++) set += valid[i >> 3] >> (i & 7) & 1;
    return rows - set;
}

/* One child column; its buffers move from the table into the array (the table forgets them). */
static int export_child(struct ArrowSchema *s, struct ArrowArray *a, const char *format,
                        const char *name, int64_t rows, int n_buffers, void **buffers, uint8_t *valid) {
    memset(s, 0, sizeof *s);
    memset(a, 0, sizeof *a);
    a->buffers = calloc((size_t)n_buffers, sizeof(void *));
    if (!a->buffers) {
        for (int i = 0; i < n_buffers; i++) free(buffers[i]);
        return NOMEM;
    }
    for (int i = 0; i < n_buffers; i++) a->buffers[i] = buffers[i];
    s->format = format; s->name = name; s->flags = 2; /* nullable */ s->release = release_schema;
    a->length = rows; a->n_buffers = n_buffers; a->release = release_array;
    a->null_count = valid ? null_count(valid, rows) : 0;
    return 0;
}

static void schema_capsule_free(PyObject *capsule) {
    struct ArrowSchema *s = PyCapsule_GetPointer(capsule, "arrow_schema");
    if (s && s->release) s->release(s);
    free(s);
}

static void array_capsule_free(PyObject *capsule) {
    struct ArrowArray *a = PyCapsule_GetPointer(capsule, "arrow_array");
    if (a && a->release) a->release(a);
    free(a);
}

#endif
