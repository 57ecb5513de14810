/* One validating pass over a PyTorch Profiler (Kineto) JSON document that copies the fields
 * tracehouse reads, for the events it keeps, straight into Arrow columns.
 *
 * Why C: decoding 100k events into Python objects and then gathering their fields into
 * columns is most of an ingest's time; no JSON library decodes to columns while keeping the
 * exact text of a timestamp.  This scanner is deliberately narrow.  It accepts a document
 * only when every field it reads has the plain shape Kineto writes (see kineto_native.py);
 * anything else -- a key written with escapes, an int beyond int64, a grid that is not three
 * ints, invalid UTF-8 anywhere, a nesting deeper than MAX_DEPTH -- makes it decline, and the
 * msgspec path, which is the reference for what a trace means and for every error message,
 * decodes the document instead.  So this file never decides what a trace means: it only has
 * to agree with the reference where it accepts, which tests/test_kineto_native.py checks.
 *
 * scan(buffer, categories) -> ([(schema capsule, array capsule), ...], events, array_start,
 *                              array_end), or an int: the byte offset where it declined.
 * Each capsule pair is an Arrow struct array (C data interface), one row per kept event --
 * those whose "ph" is "X" and whose "cat" is one of `categories` (a tuple of bytes) -- in
 * document order; there are two pairs where a big array was scanned on two threads (Split).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <stdatomic.h>

#include "_kineto_json.h"
#include "_kineto_arrow.h"
#include "_kineto_table.h"

/* ------------------------------------------------------------------ events */
/* The event fields and ``args`` keys read (as msgspec's ``_Event`` / ``_Args`` in kineto.py). */
enum { F_PH, F_CAT, F_NAME, F_TS, F_DUR, F_PID, F_TID, F_ARGS, N_FIELD };
enum { A_EXT, A_EXT_OLD, A_CORR, A_DEVICE, A_STREAM, A_BYTES, A_GRID, A_BLOCK,
       A_DIMS, A_CONCRETE, A_TYPES, N_ARG };
static const char *FIELD_KEYS[N_FIELD] = {"ph", "cat", "name", "ts", "dur", "pid", "tid", "args"};
static const char *ARG_KEYS[N_ARG] = {
    "External id", "external id", "correlation", "device", "stream", "bytes", "grid", "block",
    "Input Dims", "Concrete Inputs", "Input type"};
static unsigned char FIELD_LENS[N_FIELD], ARG_LENS[N_ARG];  /* filled by init_tables */


typedef struct { Val f[N_FIELD]; Val a[N_ARG]; } Event;

typedef struct { const char **text; Py_ssize_t *len; int n; } Cats;

static int key_index(cur s, cur e, const char **keys, const unsigned char *lens, int n) {
    size_t len = (size_t)(e - s);
    for (int i = 0; i < n; i++)  /* the first byte first: most keys of an event are not ours */
        if (lens[i] == len && keys[i][0] == (char)s[0] && memcmp(keys[i], s, len) == 0) return i;
    return -1;
}

/* An int field: an int64 or null (msgspec's ``int | None``); ``str_ok`` also allows a string. */
static int check_int(Val *v, int str_ok) {
    if (v->kind == ABSENT || v->kind == K_NULL || (str_ok && v->kind == K_STR)) return 0;
    if (v->kind != K_INT) return DECLINE;
    return to_int64(v->s, v->e, &v->ival);
}

/* Object members into slots by key; unknown keys are validated and skipped.  A key written
 * with escapes, or one seen twice, declines.  With ``args``, an object value under the key
 * ``nest`` has its own members read into ``args`` in the same pass (its text is read once). */
static int parse_members(cur *pp, cur end, int depth, Val *slots, const char **keys,
                         const unsigned char *lens, int n, int nest, Val *args) {
    cur p = skip_ws(*pp + 1, end);
    Val skipped;
    if (p < end && *p == '}') { *pp = p + 1; return 0; }
    for (;;) {
        int esc, k;
        cur ks;
        if (p >= end || *p != '"') return DECLINE;
        ks = ++p;
        if (lex_string(&p, end, &esc) || esc) return DECLINE;
        k = key_index(ks, p - 1, keys, lens, n);
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return DECLINE;
        p = skip_ws(p + 1, end);
        if (k >= 0 && slots[k].kind != ABSENT) return DECLINE;
        if (args && k == nest && p < end && *p == '{') {
            if (depth + 1 >= MAX_DEPTH) return DECLINE;
            slots[k].kind = K_OBJ;
            slots[k].s = p;
            if (parse_members(&p, end, depth + 1, args, ARG_KEYS, ARG_LENS, N_ARG, -1, NULL))
                return DECLINE;
            slots[k].e = p;
        } else if (skip_value(&p, end, depth + 1, k >= 0 ? &slots[k] : &skipped)) {
            return DECLINE;
        }
        p = skip_ws(p, end);
        if (p >= end) return DECLINE;
        if (*p == '}') { *pp = p + 1; return 0; }
        if (*p != ',') return DECLINE;
        p = skip_ws(p + 1, end);
    }
}

/* Whether msgspec can read every number in v as a float64: it refuses one past float64's
 * range ("Number out of range") in a float field (dur) and anywhere in an ``Any`` value (grid,
 * block).  Conservative: no exponent, at most 300 characters (an out-of-range number needs
 * 309 digits or an exponent); a container is checked for either as a whole. */
static int float_safe(const Val *v) {
    if (v->kind == K_INT || v->kind == K_NUM) return !v->has_exp && v->e - v->s <= 300;
    if (v->kind != K_ARR && v->kind != K_OBJ) return 1;
    if (v->e - v->s > 300) return 0;
    for (cur p = v->s; p < v->e; p++) if (*p == 'e' || *p == 'E') return 0;
    return 1;
}

/* The types msgspec's ``_Event`` / ``_Args`` structs demand, for every event kept or not. */
static int check_event(Event *ev) {
    Val *f = ev->f, *a = ev->a;
    for (int i = F_PH; i <= F_CAT; i++) {  /* escaped, they would not compare as written */
        if (f[i].kind != ABSENT && f[i].kind != K_NULL && f[i].kind != K_STR) return DECLINE;
        if (f[i].kind == K_STR && f[i].esc) return DECLINE;
    }
    if (f[F_NAME].kind != ABSENT && f[F_NAME].kind != K_STR) return DECLINE;
    if (f[F_DUR].kind != ABSENT && f[F_DUR].kind != K_NULL && f[F_DUR].kind != K_INT
        && f[F_DUR].kind != K_NUM) return DECLINE;
    if (!float_safe(&f[F_DUR]) || !float_safe(&a[A_GRID]) || !float_safe(&a[A_BLOCK])) return DECLINE;
    if (check_int(&f[F_PID], 1) || check_int(&f[F_TID], 1)) return DECLINE;
    for (int i = A_EXT; i <= A_BYTES; i++)
        if (check_int(&a[i], i == A_STREAM)) return DECLINE;
    return 0;
}

static int parse_event(cur *pp, cur end, Event *ev) {
    for (int i = 0; i < N_FIELD; i++) ev->f[i].kind = ABSENT;  /* cheaper than clearing it all */
    for (int i = 0; i < N_ARG; i++) ev->a[i].kind = ABSENT;
    if (*pp >= end || **pp != '{') return DECLINE;
    if (parse_members(pp, end, 1, ev->f, FIELD_KEYS, FIELD_LENS, N_FIELD, F_ARGS, ev->a)) return DECLINE;
    int args = ev->f[F_ARGS].kind;
    if (args != ABSENT && args != K_NULL && args != K_OBJ) return DECLINE;
    return check_event(ev);
}

/* The index of the event's category among those kept, or -1 when it is not kept. */
static int kept_category(Event *ev, const Cats *cats) {
    Val *ph = &ev->f[F_PH], *cat = &ev->f[F_CAT];
    if (ph->kind != K_STR || ph->e - ph->s != 1 || *ph->s != 'X' || cat->kind != K_STR) return -1;
    size_t len = (size_t)(cat->e - cat->s);
    for (int i = 0; i < cats->n; i++)
        if ((size_t)cats->len[i] == len && len && cats->text[i][0] == (char)cat->s[0]
            && memcmp(cats->text[i], cat->s, len) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------------ rows */
/* A pid / tid: an int, or a string of ASCII digits (``_host_id``); other strings are null. */
static int put_host_id(Table *t, int col, Val *v) {
    if (v->kind == K_INT) { put_int(t, col, v->ival); return 0; }
    put_null_int(t, col);
    if (v->kind != K_STR) return 0;
    if (v->esc) return DECLINE;
    for (cur p = v->s; p < v->e; p++) {
        if (*p >= 0x80) return DECLINE;  /* str.isdigit() knows non-ASCII digits */
        if (*p < '0' || *p > '9') return 0;
    }
    if (v->s == v->e) return 0;
    int64_t n;
    if (to_int64(v->s, v->e, &n)) return DECLINE;
    put_int(t, col, n);
    return 0;
}

/* A stream: an int, or what ``int(s, 0)`` reads from ROCm's "0x0" or a plain decimal. */
static int put_stream(Table *t, Val *v) {
    if (v->kind != K_STR) {
        if (v->kind == K_INT) put_int(t, I_STREAM, v->ival); else put_null_int(t, I_STREAM);
        return 0;
    }
    cur s = v->s, e = v->e;
    uint64_t n = 0;
    if (v->esc || s == e) return DECLINE;
    if (e - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        if (e - s > 18) return DECLINE;  /* "0x" and at most 16 digits */
        for (cur p = s + 2; p < e; p++) {
            unsigned c = *p, d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
            else return DECLINE;
            n = n << 4 | d;
        }
        if (n > INT64_MAX) return DECLINE;
        put_int(t, I_STREAM, (int64_t)n);
        return 0;
    }
    if (s[0] == '0' && e - s > 1) return DECLINE;
    for (cur p = s; p < e; p++) if (*p < '0' || *p > '9') return DECLINE;
    int64_t m;
    if (to_int64(s, e, &m)) return DECLINE;
    put_int(t, I_STREAM, m);
    return 0;
}

/* grid / block as ``_dim3`` reads them: absent, null or a string holding no JSON list gives
 * nulls; three int64s, as a list or a string of one, give the axes; anything else declines. */
static int put_dim3(Table *t, int col, Val *v) {
    if (v->kind == ABSENT || v->kind == K_NULL) {
        for (int i = 0; i < 3; i++) put_null_int(t, col + i);
        return 0;
    }
    if (v->kind == K_STR) {  /* Triton writes "[1, 1, 1]", or "grid(100,)" on a cpu op */
        Val text = *v;
        if (v->esc) return DECLINE;
        text.s = skip_ws(v->s, v->e);
        if (text.s == v->e || *text.s != '[') {  /* holds no JSON list: _dim3 finds no axes */
            for (int i = 0; i < 3; i++) put_null_int(t, col + i);
            return 0;
        }
        text.kind = K_ARR;  /* a list: three int64s, or left to the reference */
        return put_dim3(t, col, &text);
    }
    if (v->kind != K_ARR) return DECLINE;
    cur p = skip_ws(v->s + 1, v->e);
    for (int i = 0; i < 3; i++) {
        Val x;
        if (skip_value(&p, v->e, MAX_DEPTH - 1, &x) || x.kind != K_INT) return DECLINE;
        if (to_int64(x.s, x.e, &x.ival)) return DECLINE;
        put_int(t, col + i, x.ival);
        p = skip_ws(p, v->e);
        if (p >= v->e || *p != (i == 2 ? ']' : ',')) return DECLINE;
        p = skip_ws(p + 1, v->e);
    }
    return p == v->e ? 0 : DECLINE;  /* nothing after the array (in a string, it could be) */
}

/* A number's text (ts / dur), or null.  Kineto never writes exponents; the reference path
 * reads them (through float64, which is not what a polars cast of the text does). */
static int put_number_text(Table *t, int col, Val *v) {
    if (v->kind == ABSENT || v->kind == K_NULL) { put_null_text(t, col); return 0; }
    if ((v->kind != K_INT && v->kind != K_NUM) || v->has_exp) return DECLINE;
    return put_text(t, col, v->s, v->e);
}

/* Raw JSON text of an ``args`` value (``msgspec.Raw``), strings with their quotes. */
static int put_raw(Table *t, int col, Val *v) {
    if (v->kind == ABSENT) { put_null_text(t, col); return 0; }
    if (v->kind == K_STR) return put_text(t, col, v->s - 1, v->e + 1);
    return put_text(t, col, v->s, v->e);
}

static int put_row(Table *t, Event *ev, int cat) {
    Val *f = ev->f, *a = ev->a;
    int rc = table_reserve(t);
    if (rc) return rc;
    t->cat[t->rows] = cat;
    if (put_host_id(t, I_PID, &f[F_PID]) || put_host_id(t, I_TID, &f[F_TID])) return DECLINE;
    static const int plain[][2] = {{I_EXT, A_EXT}, {I_EXT_OLD, A_EXT_OLD}, {I_CORR, A_CORR},
                                   {I_DEVICE, A_DEVICE}, {I_BYTES, A_BYTES}};
    for (int i = 0; i < 5; i++) {
        Val *v = &a[plain[i][1]];
        if (v->kind == K_INT) put_int(t, plain[i][0], v->ival); else put_null_int(t, plain[i][0]);
    }
    if (put_stream(t, &a[A_STREAM]) || put_dim3(t, I_GX, &a[A_GRID]) || put_dim3(t, I_BX, &a[A_BLOCK]))
        return DECLINE;
    Val *name = &f[F_NAME];
    static const unsigned char empty[1] = {0};
    if (name->kind == ABSENT) rc = put_text(t, S_NAME, empty, empty);
    else rc = name->esc ? put_unescaped(t, S_NAME, name->s, name->e) : put_text(t, S_NAME, name->s, name->e);
    if (rc || (rc = put_number_text(t, S_TS, &f[F_TS])) || (rc = put_number_text(t, S_DUR, &f[F_DUR])))
        return rc;
    if ((rc = put_raw(t, S_DIMS, &a[A_DIMS])) || (rc = put_raw(t, S_CONCRETE, &a[A_CONCRETE]))
        || (rc = put_raw(t, S_TYPES, &a[A_TYPES])))
        return rc;
    t->rows++;
    return 0;
}

/* ------------------------------------------------------------------ document */
typedef struct { int64_t events, array_start, array_end; cur stop; } Result;

/* The second half of a big events array, scanned on its own thread from a guessed element
 * start.  The guess is confirmed only when the first thread, scanning from the document's
 * start, arrives at exactly that byte between two elements: the second thread then did what
 * the first would have done from there.  Otherwise the first thread cancels it and goes on
 * alone.  Either way the result is that of one sequential scan. */
typedef struct {
    cur at, end;
    const Cats *cats;
    atomic_int cancel;
    pthread_t thread;
    int started, joined, used, rc;
    Table t;
    Result r;
    cur after;  /* just past the array's closing bracket */
} Split;

#define SPLIT_REACHED 1
#define SPLIT_MIN_BYTES (4 << 20)

/* Elements from *pp (an element's start) to the array's closing bracket.  ``watch``: stop at
 * its guess (first thread); ``cancel``: give up once it is set (second thread). */
static int scan_elements(cur *pp, cur end, const Cats *cats, Table *t, Result *r, Split *watch,
                         atomic_int *cancel) {
    cur p = *pp;
    Event ev;
    int rc;
    for (;;) {
        if (watch && p >= watch->at) {
            if (p == watch->at) { *pp = p; return SPLIT_REACHED; }
            atomic_store(&watch->cancel, 1);
            watch = NULL;
        }
        if (cancel && (r->events & 255) == 0 && atomic_load_explicit(cancel, memory_order_relaxed))
            return DECLINE;
        r->stop = p;
        if ((rc = parse_event(&p, end, &ev))) return rc;
        r->events++;
        int cat = kept_category(&ev, cats);
        if (cat >= 0 && (rc = put_row(t, &ev, cat))) return rc;
        p = skip_ws(p, end);
        if (p >= end) return DECLINE;
        if (*p == ']') { *pp = p + 1; return 0; }
        if (*p != ',') return DECLINE;
        p = skip_ws(p + 1, end);
    }
}

static void *scan_second_half(void *arg) {
    Split *split = arg;
    cur p = split->at;
    split->rc = scan_elements(&p, split->end, split->cats, &split->t, &split->r, NULL, &split->cancel);
    split->after = p;
    return NULL;
}

/* A likely element start past the middle of the text: a ``{`` after ``},``. */
static cur guess_split(cur start, cur end) {
    if (end - start < SPLIT_MIN_BYTES) return NULL;
    for (cur p = start + (end - start) / 2; (p = memchr(p, '}', (size_t)(end - p))); p++) {
        cur q = skip_ws(p + 1, end);
        if (q < end && *q == ',' && (q = skip_ws(q + 1, end)) < end && *q == '{') return q;
    }
    return NULL;
}

/* Wait for the second thread; ``cancel`` first when its result is not wanted. */
static void split_join(Split *split, int cancel) {
    if (split->started && !split->joined) {
        if (cancel) atomic_store(&split->cancel, 1);
        pthread_join(split->thread, NULL);
        split->joined = 1;
    }
}

static int scan_events(cur *pp, cur end, const Cats *cats, Table *t, Result *r, Split *split) {
    cur p = skip_ws(*pp + 1, end);
    if (p < end && *p == ']') { *pp = p + 1; return 0; }
    int rc = scan_elements(&p, end, cats, t, r, split->started && split->at >= p ? split : NULL, NULL);
    if (rc != SPLIT_REACHED) {
        *pp = p;
        return rc;
    }
    split_join(split, 0);
    if (split->rc) {
        r->stop = split->r.stop;
        return split->rc;
    }
    split->used = 1;
    r->events += split->r.events;
    *pp = split->after;
    return 0;
}

/* The document: an events array, or an object with one ``traceEvents`` array among other
 * members (validated and left for the caller to decode). */
static int scan_document(cur p, cur end, const Cats *cats, Table *t, Result *r, Split *split) {
    cur start = p;
    int rc, seen = 0;
    p = skip_ws(p, end);
    r->stop = p;
    if (p < end && *p == '[') {
        r->array_start = p - start;
        if ((rc = scan_events(&p, end, cats, t, r, split))) return rc;
        r->array_end = p - start;
        seen = 1;
    } else if (p < end && *p == '{') {
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') p++;
        else for (;;) {
            int esc;
            cur ks = p + 1;
            Val skipped;
            if (p >= end || *p != '"') return DECLINE;
            p++;
            if (lex_string(&p, end, &esc) || esc) return DECLINE;
            int is_events = p - 1 - ks == 11 && memcmp(ks, "traceEvents", 11) == 0;
            p = skip_ws(p, end);
            if (p >= end || *p != ':') return DECLINE;
            p = skip_ws(p + 1, end);
            if (is_events) {
                if (seen || p >= end || *p != '[') return DECLINE;
                r->array_start = p - start;
                if ((rc = scan_events(&p, end, cats, t, r, split))) return rc;
                r->array_end = p - start;
                seen = 1;
            } else if (skip_value(&p, end, 1, &skipped)) {
                return DECLINE;
            }
            r->stop = p = skip_ws(p, end);
            if (p < end && *p == '}') { p++; break; }
            if (p >= end || *p != ',') return DECLINE;
            p = skip_ws(p + 1, end);
        }
    }
    r->stop = p = skip_ws(p, end);
    return seen && p == end ? 0 : DECLINE;
}

/* ------------------------------------------------------------------ pieces */
/* The events array a piece of text at a time, so that a trace of any size is scanned in
 * bounded memory (kineto_stream.py feeds it).  A piece starts at an element of the array (or,
 * at the array's start, possibly at its closing bracket) and is scanned element by element,
 * with the same parse_event / put_row as a whole document.  An element is taken only once
 * the separator after it (``,`` or ``]``) is in the piece, so the piece's last, cut-off
 * element is never half taken: the scan stops at its start and the caller hands it over again
 * with the text that follows.  A cut-off element always fails to parse (its object is not
 * closed), but so does a malformed one: the caller tells them apart by whether more text
 * helps (see kineto_stream.py).  A malformed separator or a field the reference must read
 * declines at once. */
enum { CHUNK_ENDED = 0, CHUNK_MORE = 1 };

static int scan_piece(cur start, cur end, int at_start, const Cats *cats, Table *t, Result *r,
                      cur *consumed) {
    cur p = skip_ws(start, end);
    Event ev;
    int rc;
    if (at_start && p < end && *p == ']') { *consumed = p + 1; return CHUNK_ENDED; }
    for (;;) {
        cur element = p = skip_ws(p, end);
        *consumed = element;
        r->stop = element;
        if (p >= end || parse_event(&p, end, &ev)) return CHUNK_MORE;
        cur q = skip_ws(p, end);
        if (q >= end) return CHUNK_MORE;  /* its separator is in the next piece: taken then */
        if (*q != ',' && *q != ']') { r->stop = q; return DECLINE; }
        r->events++;
        int cat = kept_category(&ev, cats);
        if (cat >= 0 && (rc = put_row(t, &ev, cat))) return rc;
        if (*q == ']') { *consumed = q + 1; return CHUNK_ENDED; }
        p = q + 1;
    }
}

/* ------------------------------------------------------------------ module */
static void init_tables(void) {
    for (int c = 0; c < 256; c++) STOP[c] = (c == '"' || c == '\\' || c < 0x20 || c >= 0x80);
    for (int i = 0; i < N_FIELD; i++) FIELD_LENS[i] = (unsigned char)strlen(FIELD_KEYS[i]);
    for (int i = 0; i < N_ARG; i++) ARG_LENS[i] = (unsigned char)strlen(ARG_KEYS[i]);
}

/* A table as a (schema, array) pair of capsules; the table's buffers move into them. */
static PyObject *capsules(Table *t) {
    struct ArrowSchema *schema = malloc(sizeof *schema);
    struct ArrowArray *array = malloc(sizeof *array);
    PyObject *sc = NULL, *ac = NULL;
    if (!schema || !array || table_reserve(t)) {  /* zero rows still need offset buffers */
        free(schema); free(array);
        return PyErr_NoMemory();
    }
    int rc = export_table(t, schema, array);
    if (!(sc = PyCapsule_New(schema, "arrow_schema", schema_capsule_free))) {
        if (schema->release) schema->release(schema);
        free(schema);
    }
    if (!sc || !(ac = PyCapsule_New(array, "arrow_array", array_capsule_free))) {
        if (array->release) array->release(array);
        free(array);
    }
    if (rc == 0 && sc && ac) return Py_BuildValue("(NN)", sc, ac);
    Py_XDECREF(sc);
    Py_XDECREF(ac);
    return rc ? PyErr_NoMemory() : NULL;
}

static int read_categories(PyObject *tuple, Cats *cats) {
    cats->n = (int)PyTuple_GET_SIZE(tuple);
    cats->text = calloc((size_t)cats->n + 1, sizeof(char *));
    cats->len = calloc((size_t)cats->n + 1, sizeof(Py_ssize_t));
    if (!cats->text || !cats->len) { PyErr_NoMemory(); return -1; }
    for (int i = 0; i < cats->n; i++) {
        char *text;
        if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(tuple, i), &text, &cats->len[i]) < 0) return -1;
        cats->text[i] = text;
    }
    return 0;
}

/* The scan proper, without the GIL: on two threads when the text is big (see Split). */
static int scan_buffer(cur start, cur end, const Cats *cats, Table *t, Result *r, Split *split) {
    split->at = guess_split(start, end);
    split->end = end;
    split->cats = cats;
    atomic_init(&split->cancel, 0);
    split->started = split->at && pthread_create(&split->thread, NULL, scan_second_half, split) == 0;
    int rc = scan_document(start, end, cats, t, r, split);
    split_join(split, 1);
    return rc;
}

static PyObject *scan(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf;
    PyObject *cat_tuple, *out = NULL, *first = NULL, *second = NULL;
    Cats cats = {NULL, NULL, 0};
    Table t = {0};
    Result r = {0};
    Split split;
    int rc;
    if (!PyArg_ParseTuple(args, "y*O!:scan", &buf, &PyTuple_Type, &cat_tuple)) return NULL;
    memset(&split, 0, sizeof split);
    if (read_categories(cat_tuple, &cats) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    rc = scan_buffer(buf.buf, (cur)buf.buf + buf.len, &cats, &t, &r, &split);
    Py_END_ALLOW_THREADS
    if (rc == DECLINE) {
        out = PyLong_FromSsize_t((Py_ssize_t)(r.stop - (cur)buf.buf));
    } else if (rc) {
        PyErr_NoMemory();
    } else if ((first = capsules(&t)) && (!split.used || (second = capsules(&split.t)))) {
        long long events = r.events, start = r.array_start, end = r.array_end;
        out = split.used ? Py_BuildValue("([OO]LLL)", first, second, events, start, end)
                         : Py_BuildValue("([O]LLL)", first, events, start, end);
    }
    Py_XDECREF(first);
    Py_XDECREF(second);
done:
    table_free(&t);
    table_free(&split.t);
    free(cats.text);
    free(cats.len);
    PyBuffer_Release(&buf);
    return out;
}

/* scan_piece(buffer, categories, at_start) -> ((schema, array), events, consumed, ended) or
 * the int offset where it declined. */
static PyObject *scan_piece_py(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf;
    PyObject *cat_tuple, *out = NULL, *pair = NULL;
    Cats cats = {NULL, NULL, 0};
    Table t = {0};
    Result r = {0};
    int at_start, rc;
    cur consumed = NULL;
    if (!PyArg_ParseTuple(args, "y*O!p:scan_piece", &buf, &PyTuple_Type, &cat_tuple, &at_start)) return NULL;
    if (read_categories(cat_tuple, &cats) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    rc = scan_piece(buf.buf, (cur)buf.buf + buf.len, at_start, &cats, &t, &r, &consumed);
    Py_END_ALLOW_THREADS
    if (rc == DECLINE) {
        out = PyLong_FromSsize_t((Py_ssize_t)(r.stop - (cur)buf.buf));
    } else if (rc != CHUNK_ENDED && rc != CHUNK_MORE) {
        PyErr_NoMemory();
    } else if ((pair = capsules(&t))) {
        out = Py_BuildValue("(OLnO)", pair, (long long)r.events, (Py_ssize_t)(consumed - (cur)buf.buf),
                            rc == CHUNK_ENDED ? Py_True : Py_False);
    }
    Py_XDECREF(pair);
done:
    table_free(&t);
    free(cats.text);
    free(cats.len);
    PyBuffer_Release(&buf);
    return out;
}

static PyMethodDef METHODS[] = {
    {"scan", scan, METH_VARARGS,
     "scan(buffer, categories) -> ([(schema capsule, array capsule), ...], events, array_start, array_end)"
     " or the int offset where the document was declined."},
    {"scan_piece", scan_piece_py, METH_VARARGS,
     "scan_piece(buffer, categories, at_start) -> ((schema capsule, array capsule), events, consumed, ended)"
     " or the int offset where it declined; see kineto_stream.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_kineto_scan", NULL, -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kineto_scan(void) {
    init_tables();
    return PyModule_Create(&MODULE);
}
