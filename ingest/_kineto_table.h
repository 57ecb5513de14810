/* The columns _kineto_scan.c fills, one row per kept event: growing buffers, the writers
 * of one value, and the export of a table as an Arrow struct array.  Included once. */
#ifndef TRACEHOUSE_KINETO_TABLE_H
#define TRACEHOUSE_KINETO_TABLE_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kineto_arrow.h"
#include "_kineto_json.h"

enum { I_PID, I_TID, I_EXT, I_EXT_OLD, I_CORR, I_DEVICE, I_STREAM, I_BYTES,
       I_GX, I_GY, I_GZ, I_BX, I_BY, I_BZ, N_INT };
enum { S_NAME, S_TS, S_DUR, S_DIMS, S_CONCRETE, S_TYPES, N_STR };
static const char *INT_NAMES[N_INT] = {
    "pid", "tid", "external_id", "external_id_old", "correlation", "device", "stream", "bytes",
    "grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z"};
static const char *STR_NAMES[N_STR] = {
    "name", "ts", "dur", "input_dims", "concrete_inputs", "input_types"};

typedef struct { int64_t *data; uint8_t *valid; } IntCol;
typedef struct { int32_t *offsets; char *data; int64_t size, cap; uint8_t *valid; } StrCol;
typedef struct {
    int64_t rows, cap;
    int32_t *cat;
    IntCol ints[N_INT];
    StrCol strs[N_STR];
} Table;

static void table_free(Table *t) {
    free(t->cat);
    for (int i = 0; i < N_INT; i++) { free(t->ints[i].data); free(t->ints[i].valid); }
    for (int i = 0; i < N_STR; i++) {
        free(t->strs[i].offsets); free(t->strs[i].data); free(t->strs[i].valid);
    }
    memset(t, 0, sizeof *t);
}

static int grow(void **p, size_t bytes) {
    void *q = realloc(*p, bytes);
    if (!q) return NOMEM;
    *p = q;
    return 0;
}

static int str_room(StrCol *c, int64_t n) {
    if (c->size + n <= c->cap) return 0;
    int64_t cap = c->cap ? c->cap : 1 << 16;
    while (cap < c->size + n) cap *= 2;
    if (cap > INT32_MAX) return DECLINE;  /* 32-bit Arrow offsets */
    if (grow((void **)&c->data, cap)) return NOMEM;
    c->cap = cap;
    return 0;
}

/* Room for one more row in every column; validity bitmaps are zeroed as they grow. */
static int table_reserve(Table *t) {
    if (t->rows < t->cap) return 0;
    int64_t cap = t->cap ? t->cap * 2 : 4096, old_bits = (t->cap + 7) / 8, bits = (cap + 7) / 8;
    if (grow((void **)&t->cat, cap * sizeof(int32_t))) return NOMEM;
    for (int i = 0; i < N_INT; i++) {
        if (grow((void **)&t->ints[i].data, cap * sizeof(int64_t))) return NOMEM;
        if (grow((void **)&t->ints[i].valid, bits)) return NOMEM;
        memset(t->ints[i].valid + old_bits, 0, bits - old_bits);
    }
    for (int i = 0; i < N_STR; i++) {
        StrCol *c = &t->strs[i];
        if (grow((void **)&c->offsets, (cap + 1) * sizeof(int32_t))) return NOMEM;
        if (t->cap == 0) {  /* a data buffer from the start: Arrow consumers want one */
            c->offsets[0] = 0;
            if (str_room(c, 1)) return NOMEM;
        }
        if (grow((void **)&c->valid, bits)) return NOMEM;
        memset(c->valid + old_bits, 0, bits - old_bits);
    }
    t->cap = cap;
    return 0;
}

static inline void set_bit(uint8_t *bits, int64_t i) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }

/* ------------------------------------------------------------------ one value */
static inline void put_int(Table *t, int col, int64_t v) {
    t->ints[col].data[t->rows] = v;
    set_bit(t->ints[col].valid, t->rows);
}

static inline void put_null_int(Table *t, int col) { t->ints[col].data[t->rows] = 0; }

static inline int put_text(Table *t, int col, cur s, cur e) {
    StrCol *c = &t->strs[col];
    int rc = str_room(c, e - s);
    if (rc) return rc;
    if (e > s) memcpy(c->data + c->size, s, (size_t)(e - s));
    c->size += e - s;
    c->offsets[t->rows + 1] = (int32_t)c->size;
    set_bit(c->valid, t->rows);
    return 0;
}

static inline void put_null_text(Table *t, int col) {
    t->strs[col].offsets[t->rows + 1] = (int32_t)t->strs[col].size;
}

static int put_utf8(StrCol *c, unsigned u) {
    unsigned char b[4];
    int n = u < 0x80 ? 1 : u < 0x800 ? 2 : u < 0x10000 ? 3 : 4;
    if (n == 1) b[0] = (unsigned char)u;
    else if (n == 2) { b[0] = 0xC0 | u >> 6; b[1] = 0x80 | (u & 0x3F); }
    else if (n == 3) { b[0] = 0xE0 | u >> 12; b[1] = 0x80 | (u >> 6 & 0x3F); b[2] = 0x80 | (u & 0x3F); }
    else { b[0] = 0xF0 | u >> 18; b[1] = 0x80 | (u >> 12 & 0x3F); b[2] = 0x80 | (u >> 6 & 0x3F);
           b[3] = 0x80 | (u & 0x3F); }
    memcpy(c->data + c->size, b, (size_t)n);
    c->size += n;
    return 0;
}

/* A string's decoded text (escapes already validated by lex_string; decoding never grows it). */
static int put_unescaped(Table *t, int col, cur s, cur e) {
    StrCol *c = &t->strs[col];
    int rc = str_room(c, e - s);
    if (rc) return rc;
    for (cur p = s; p < e;) {
        cur run = p;
        while (p < e && *p != '\\') p++;
        memcpy(c->data + c->size, run, (size_t)(p - run));
        c->size += p - run;
        if (p >= e) break;
        unsigned char x = p[1];
        if (x != 'u') {
            const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
            c->data[c->size++] = to[strchr(from, x) - from];
            p += 2;
            continue;
        }
        unsigned u = 0, lo = 0xDC00;  /* set by hex4: lex_string checked these escapes */
        hex4(p + 2, e, &u);
        p += 6;
        if (u >= 0xD800 && u <= 0xDBFF) {
            hex4(p + 2, e, &lo);
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        put_utf8(c, u);
    }
    c->offsets[t->rows + 1] = (int32_t)c->size;
    set_bit(c->valid, t->rows);
    return 0;
}

/* ------------------------------------------------------------------ Arrow export */
static int export_table(Table *t, struct ArrowSchema *schema, struct ArrowArray *array) {
    int n = 1 + N_INT + N_STR, k = 0, rc = 0;
    memset(schema, 0, sizeof *schema);
    memset(array, 0, sizeof *array);
    schema->format = "+s"; schema->name = ""; schema->n_children = n; schema->release = release_schema;
    array->length = t->rows; array->n_buffers = 1; array->n_children = n; array->release = release_array;
    schema->children = calloc((size_t)n, sizeof(void *));
    array->children = calloc((size_t)n, sizeof(void *));
    array->buffers = calloc(1, sizeof(void *));
    if (!schema->children || !array->children || !array->buffers) rc = NOMEM;
    for (; k < n && !rc; k++) {
        /* zeroed: a child whose partner failed to allocate is released as absent */
        schema->children[k] = calloc(1, sizeof(struct ArrowSchema));
        array->children[k] = calloc(1, sizeof(struct ArrowArray));
        if (!schema->children[k] || !array->children[k]) { rc = NOMEM; k++; break; }
        struct ArrowSchema *cs = schema->children[k];
        struct ArrowArray *ca = array->children[k];
        if (k == 0) {
            void *bufs[2] = {NULL, t->cat};
            rc = export_child(cs, ca, "i", "cat", t->rows, 2, bufs, NULL);
            t->cat = NULL;
        } else if (k <= N_INT) {
            IntCol *c = &t->ints[k - 1];
            void *bufs[2] = {c->valid, c->data};
            rc = export_child(cs, ca, "l", INT_NAMES[k - 1], t->rows, 2, bufs, c->valid);
            c->valid = NULL; c->data = NULL;
        } else {
            StrCol *c = &t->strs[k - 1 - N_INT];
            void *bufs[3] = {c->valid, c->offsets, c->data};
            rc = export_child(cs, ca, "u", STR_NAMES[k - 1 - N_INT], t->rows, 3, bufs, c->valid);
            c->valid = NULL; c->offsets = NULL; c->data = NULL;
        }
    }
    if (rc)  /* the release callbacks skip the children not made */
        schema->n_children = array->n_children = schema->children && array->children ? k : 0;
    return rc;
}

#endif
