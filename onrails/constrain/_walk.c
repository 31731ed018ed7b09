/* Mask walks down the vocabulary trie, in compiled code.
 *
 * The same walk as ``_Generation._walk_numpy`` in compiled.py, which documents it: from trie
 * nodes at automaton states, collect the tokens below that stay alive. States with a few ways
 * forward are followed one terminal at a time through each terminal's byte DFA, other states
 * step the lazily built automaton. Where the automaton lacks something (a state's ways forward,
 * the boundary after a terminal, a state's sources, transitions), the walk asks Python for it and
 * reads the automaton's tables again. In numpy each level of a walk cost a few dozen calls on
 * arrays of a few dozen nodes, most of a first visit's time; here a node costs a few loads.
 *
 * Pairs (node, state) go on once each, as in the numpy walk (see ``_Entered``), and so do the
 * (node, way, DFA state) triples of the terminals followed: where terminals may follow each other,
 * a run of bytes splits into terminals in exponentially many ways that meet at the same pairs.
 *
 * A root pass (``Walker.root_pass``) steps the automaton from the trie's root instead, a level at a
 * time: where words follow words, a walk would start from tens of thousands of nodes.
 *
 * The passes read one byte DFA over the trie: from its root (``dfa_pass``), beside another state
 * (``pair_pass``), or below given nodes (``below_pass``, which reads a walk's first terminals for
 * a cache shared across walks); ``literal_pass`` reads a fixed string, and ``or_at`` sets a cached
 * walk's tokens in a mask. ``column_groups`` groups an automaton state's missing transitions by
 * where they lead, for ``Automaton.fill_bytes``. For the terminals' byte DFAs: ``determinise``
 * (subset construction), ``live_states`` (the states that can still accept) and
 * ``equivalent_states`` (the states that read the same words).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Must match onrails/constrain/_automaton.py. */
#define DEAD 0
#define UNKNOWN (-1)
#define SOURCES_UNKNOWN 0
#define SOURCES_SUSPENDED 2
#define SPLIT_UNKNOWN 0
#define SPLIT 1

/* ---- growable vectors of int64 pairs ---------------------------------------------------- */

typedef struct {
    int64_t *a;
    Py_ssize_t n, cap; /* in pairs */
} Pairs;

static int pairs_push(Pairs *v, int64_t x, int64_t y) {
    if (v->n == v->cap) {
        Py_ssize_t cap = v->cap ? 2 * v->cap : 64;
        int64_t *a = PyMem_Realloc(v->a, (size_t)cap * 2 * sizeof(int64_t));
        if (!a) {
            PyErr_NoMemory();
            return -1;
        }
        v->a = a;
        v->cap = cap;
    }
    v->a[2 * v->n] = x;
    v->a[2 * v->n + 1] = y;
    v->n++;
    return 0;
}

/* ---- a set of (uint64, uint64) keys, open addressing ------------------------------------ */

/* Sets kept between walks up to this many slots (160 kB; the median walk adds 300 pairs); a
 * wider walk's are freed after it, so a cache of grammars does not hold them. */
#define KEPT_SLOTS (1 << 13)

typedef struct {
    uint64_t *k;     /* two words a slot */
    uint32_t *stamp; /* a slot is taken when its stamp is the set's epoch: emptying is a count */
    size_t mask, n;
    uint32_t epoch;
} Set;

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t h = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL + (a << 6) + (a >> 2));
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 29;
    return h;
}

static void set_free(Set *s) {
    PyMem_Free(s->k);
    PyMem_Free(s->stamp);
    s->k = NULL;
    s->stamp = NULL;
}

static int set_init(Set *s, size_t slots) {
    s->k = PyMem_Malloc(slots * 2 * sizeof(uint64_t));
    s->stamp = PyMem_Calloc(slots, sizeof(uint32_t));
    s->mask = slots - 1;
    s->n = 0;
    s->epoch = 1;
    if (!s->k || !s->stamp) {
        set_free(s);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Empties the set without touching its slots; one grown past KEPT_SLOTS starts small again. */
static int set_clear(Set *s, size_t slots) {
    if (s->mask + 1 > KEPT_SLOTS || s->epoch == UINT32_MAX) {
        set_free(s);
        return set_init(s, slots);
    }
    s->epoch++;
    s->n = 0;
    return 0;
}

/* The slot holding (a, b), or the free one where it would go; keyed by ``a`` alone for maps. */
static size_t find(const Set *s, uint64_t a, uint64_t b, int by_key, int *found) {
    size_t i = (by_key ? mix(a, 0) : mix(a, b)) & s->mask;
    while (s->stamp[i] == s->epoch) {
        if (s->k[2 * i] == a && (by_key || s->k[2 * i + 1] == b)) {
            *found = 1;
            return i;
        }
        i = (i + 1) & s->mask;
    }
    *found = 0;
    return i;
}

static int grow(Set *s, int by_key) {
    Set bigger;
    if (set_init(&bigger, 2 * (s->mask + 1)) < 0) return -1;
    for (size_t j = 0; j <= s->mask; j++) {
        if (s->stamp[j] != s->epoch) continue;
        int found;
        size_t i = find(&bigger, s->k[2 * j], s->k[2 * j + 1], by_key, &found);
        bigger.k[2 * i] = s->k[2 * j];
        bigger.k[2 * i + 1] = s->k[2 * j + 1];
        bigger.stamp[i] = bigger.epoch;
        bigger.n++;
    }
    set_free(s);
    *s = bigger;
    return 0;
}

/* Adds (a, b) where absent (``*added``); returns the slot's second word, NULL on error. */
static uint64_t *insert(Set *s, uint64_t a, uint64_t b, int by_key, int *added) {
    int found;
    size_t i = find(s, a, b, by_key, &found);
    if (!found) {
        if (2 * (s->n + 1) > s->mask + 1) {
            if (grow(s, by_key) < 0) return NULL;
            i = find(s, a, b, by_key, &found);
        }
        s->k[2 * i] = a;
        s->k[2 * i + 1] = b;
        s->stamp[i] = s->epoch;
        s->n++;
    }
    *added = !found;
    return &s->k[2 * i + 1];
}

/* 1 if (a, b) was added, 0 if it was there, -1 on error. */
static int set_add(Set *s, uint64_t a, uint64_t b) {
    int added;
    return insert(s, a, b, 0, &added) ? added : -1;
}

/* A map of uint64 keys to int64 values in the same slots: the value's slot, set to ``fresh``
 * where the key was absent (NULL on error). */
static int64_t *map_slot(Set *s, uint64_t a, int64_t fresh) {
    int added;
    return (int64_t *)insert(s, a, (uint64_t)fresh, 1, &added);
}

/* ---- the walker -------------------------------------------------------------------------- */

typedef struct {
    const int32_t *table;     /* the terminal's flat DFA table: next state * 256 */
    const uint8_t *accepting; /* per DFA state */
    int32_t start, dead;      /* times 256 */
    PyObject *table_obj, *accepting_obj, *stack, *terminal;
    int64_t boundary; /* the automaton state after the terminal; -2 until asked */
} Way;

/* The vocabulary trie's arrays, held while in use. */
typedef struct {
    Py_buffer b[6];
    int held;
    const int64_t *child_start, *child_count, *tok_start, *tok_count, *tok_ids;
    const int32_t *byte;
    Py_ssize_t n_nodes;
} Trie;

/* An automaton table, held while it is the automaton's (it is replaced when states outgrow it). */
typedef struct {
    const char *name;
    Py_ssize_t itemsize;
    Py_buffer b;
    int held;
} Table;

typedef struct {
    PyObject_HEAD
    Trie trie;
    int64_t max_token; /* words must have a bit for it */
    /* the automaton */
    PyObject *automaton;
    Table tables[3]; /* trans, splits, source_status */
    const int32_t *trans;
    const int8_t *splits, *status;
    Py_ssize_t n_states;
    /* the ways of the split states met so far: ways and boundaries never change once known */
    Way *ways;
    Py_ssize_t n_ways, cap_ways;
    Set state_ways; /* state -> first way << 16 | count + 1 (count 0: stepped whole) */
    PyObject *over_budget;
    /* one walk's */
    int busy;
    PyObject *ways_of, *boundary_after, *state_sources, *fill_bytes;
    uint32_t *words;
    Set entered, followed;
    size_t budget;
} Walker;

/* Holds the automaton's tables again where they were replaced (after any call into Python). */
static int read_automaton(Walker *w) {
    for (int i = 0; i < 3; i++) {
        Table *t = &w->tables[i];
        PyObject *array = PyObject_GetAttrString(w->automaton, t->name);
        if (!array) return -1;
        int same = t->held && t->b.obj == array;
        if (!same) {
            if (t->held) PyBuffer_Release(&t->b);
            t->held = 0;
            if (PyObject_GetBuffer(array, &t->b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
                Py_DECREF(array);
                return -1;
            }
            t->held = 1;
            if (t->b.itemsize != t->itemsize) {
                Py_DECREF(array);
                PyErr_Format(PyExc_TypeError, "automaton.%s: items of %zd bytes, expected %zd", t->name,
                             t->b.itemsize, t->itemsize);
                return -1;
            }
        }
        Py_DECREF(array);
    }
    w->trans = w->tables[0].b.buf;
    w->splits = w->tables[1].b.buf;
    w->status = w->tables[2].b.buf;
    w->n_states = w->tables[0].b.len / (256 * 4);
    if (w->tables[1].b.len < w->n_states) w->n_states = w->tables[1].b.len;
    if (w->tables[2].b.len < w->n_states) w->n_states = w->tables[2].b.len;
    return 0;
}

static int check_state(Walker *w, int64_t state) {
    if (state < 0 || state >= w->n_states) {
        PyErr_Format(PyExc_IndexError, "automaton state %lld outside the tables", (long long)state);
        return -1;
    }
    return 0;
}

/* Calls a callback (stealing ``args``), then holds the automaton's tables again. */
static PyObject *call(Walker *w, PyObject *fn, PyObject *args) {
    if (!args) return NULL;
    PyObject *result = PyObject_CallObject(fn, args);
    Py_DECREF(args);
    if (!result) return NULL;
    if (read_automaton(w) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static int count_pair(Walker *w) {
    if (w->entered.n + w->followed.n > w->budget) {
        PyObject *error = PyObject_CallFunction(w->over_budget, "n", (Py_ssize_t)w->budget);
        if (error != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(error), error);
            Py_DECREF(error);
        }
        return -1;
    }
    return 0;
}

static void mark(Walker *w, int64_t node) {
    int64_t k = w->trie.tok_start[node], end = k + w->trie.tok_count[node];
    for (; k < end; k++) {
        int64_t t = w->trie.tok_ids[k];
        w->words[t >> 5] |= (uint32_t)1 << (t & 31);
    }
}

/* Reads one way of ``ways_of``'s answer into a Way. */
static int read_way(Way *way, PyObject *item) {
    PyObject *table, *accepting;
    int start, dead;
    if (!PyArg_ParseTuple(item, "OOiiOO", &table, &accepting, &start, &dead, &way->stack, &way->terminal)) return -1;
    Py_buffer t, a;
    if (PyObject_GetBuffer(table, &t, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (PyObject_GetBuffer(accepting, &a, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&t);
        return -1;
    }
    int ok = t.itemsize == 4 && a.itemsize == 1 && start >= 0 && dead >= 0 && start / 256 < a.len &&
             dead / 256 <= a.len && t.len / 4 >= (Py_ssize_t)(dead / 256 + 1) * 256;
    /* The arrays stay referenced, so their memory stays put (numpy moves none it shares). */
    way->table = t.buf;
    way->accepting = a.buf;
    PyBuffer_Release(&t);
    PyBuffer_Release(&a);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "ways_of: a DFA table of int32, flags of one byte, states inside them");
        return -1;
    }
    way->start = start;
    way->dead = dead;
    way->boundary = -2;
    way->table_obj = table;
    way->accepting_obj = accepting;
    Py_INCREF(table);
    Py_INCREF(accepting);
    Py_INCREF(way->stack);
    Py_INCREF(way->terminal);
    return 0;
}

/* The ways forward of ``state`` when followed terminal by terminal (``*count`` > 0), else 0. */
static int ways_for(Walker *w, int64_t state, Py_ssize_t *first, Py_ssize_t *count) {
    *count = 0;
    int8_t split = w->splits[state];
    if (split != SPLIT_UNKNOWN && split != SPLIT) return 0;
    int64_t *slot = map_slot(&w->state_ways, (uint64_t)state, -1);
    if (!slot) return -1;
    if (*slot != -1) {
        *first = *slot >> 16;
        *count = (*slot & 0xFFFF) - 1;
        return 0;
    }
    PyObject *ways = call(w, w->ways_of, Py_BuildValue("(L)", (long long)state));
    if (!ways) return -1;
    Py_ssize_t start = w->n_ways, n = 0;
    if (ways != Py_None) {
        if (!PyTuple_Check(ways) || PyTuple_GET_SIZE(ways) >= 0xFFFF) {
            Py_DECREF(ways);
            PyErr_SetString(PyExc_TypeError, "ways_of must return None or a short tuple");
            return -1;
        }
        n = PyTuple_GET_SIZE(ways);
        if (w->n_ways + n > w->cap_ways) {
            Py_ssize_t cap = 2 * (w->n_ways + n) + 16;
            Way *grown = PyMem_Realloc(w->ways, (size_t)cap * sizeof(Way));
            if (!grown) {
                Py_DECREF(ways);
                PyErr_NoMemory();
                return -1;
            }
            w->ways = grown;
            w->cap_ways = cap;
        }
        /* Counted as each is read, so the walker releases them, whether or not all are read. */
        for (Py_ssize_t i = 0; i < n; i++, w->n_ways++) {
            if (read_way(&w->ways[start + i], PyTuple_GET_ITEM(ways, i)) < 0) {
                Py_DECREF(ways);
                return -1;
            }
        }
    }
    Py_DECREF(ways);
    slot = map_slot(&w->state_ways, (uint64_t)state, -1);
    if (!slot) return -1;
    *slot = (int64_t)start << 16 | (n + 1);
    *first = start;
    *count = n;
    return 0;
}

static int end_at(Walker *w, Py_ssize_t index, int64_t node, Pairs *next) {
    Way *way = &w->ways[index];
    if (way->boundary == -2) {
        PyObject *b = call(w, w->boundary_after, PyTuple_Pack(2, way->stack, way->terminal));
        if (!b) return -1;
        int64_t boundary = PyLong_AsLongLong(b);
        Py_DECREF(b);
        if (boundary == -1 && PyErr_Occurred()) return -1;
        way->boundary = boundary;
    }
    if (way->boundary == DEAD) return 0;
    int added = set_add(&w->entered, (uint64_t)node, (uint64_t)way->boundary);
    if (added < 0 || count_pair(w) < 0) return -1;
    return added ? pairs_push(next, node, way->boundary) : 0;
}

/* Reads on below ``node`` in way ``index``'s terminal until it dies; sends the nodes where the
 * terminal may end (with bytes below) to the boundary after it. */
static int follow(Walker *w, Py_ssize_t index, int64_t node, Pairs *todo, Pairs *next) {
    const int32_t *table = w->ways[index].table;
    const uint8_t *accepting = w->ways[index].accepting;
    int32_t start = w->ways[index].start, dead = w->ways[index].dead;
    if (accepting[start >> 8] && w->trie.child_count[node] && end_at(w, index, node, next) < 0) return -1;
    int added = set_add(&w->followed, (uint64_t)node, (uint64_t)index << 32 | (uint32_t)start);
    if (added <= 0) return added;
    todo->n = 0;
    if (pairs_push(todo, node, start) < 0) return -1;
    while (todo->n) {
        todo->n--;
        int64_t at = todo->a[2 * todo->n];
        int32_t state = (int32_t)todo->a[2 * todo->n + 1];
        int64_t child = w->trie.child_start[at], last = child + w->trie.child_count[at];
        for (; child < last; child++) {
            int32_t nxt = table[state + w->trie.byte[child]];
            if (nxt == dead) continue;
            mark(w, child);
            if (!w->trie.child_count[child]) continue;
            if (accepting[nxt >> 8] && end_at(w, index, child, next) < 0) return -1;
            added = set_add(&w->followed, (uint64_t)child, (uint64_t)index << 32 | (uint32_t)nxt);
            if (added < 0 || count_pair(w) < 0) return -1;
            if (added && pairs_push(todo, child, nxt) < 0) return -1;
        }
    }
    return 0;
}

/* Notes that ``state`` lacks its transition on ``byte``: ``lacking`` maps a state to where its 256
 * bits start in ``bits`` (in pairs). */
static int lack(Set *lacking, Pairs *bits, int64_t state, int32_t byte) {
    int64_t *slot = map_slot(lacking, (uint64_t)state, bits->n);
    if (!slot || (*slot == bits->n && (pairs_push(bits, 0, 0) < 0 || pairs_push(bits, 0, 0) < 0))) return -1;
    bits->a[2 * *slot + (byte >> 6)] |= (int64_t)((uint64_t)1 << (byte & 63));
    return 0;
}

/* Asks ``fill_bytes`` for what ``lack`` noted, each state's bytes at once; frees both. */
static int ask(Walker *w, Set *lacking, Pairs *bits) {
    int failed = 0;
    for (size_t j = 0; j <= lacking->mask && !failed; j++) {
        if (lacking->stamp[j] != lacking->epoch) continue;
        const uint64_t *set = (const uint64_t *)&bits->a[2 * lacking->k[2 * j + 1]];
        char byts[256];
        Py_ssize_t n = 0;
        for (int byte = 0; byte < 256; byte++)
            if (set[byte >> 6] >> (byte & 63) & 1) byts[n++] = (char)byte;
        PyObject *r = call(w, w->fill_bytes, Py_BuildValue("(Ly#)", (long long)lacking->k[2 * j], byts, n));
        if (!r) failed = 1;
        Py_XDECREF(r);
    }
    set_free(lacking);
    PyMem_Free(bits->a);
    bits->a = NULL;
    return failed ? -1 : 0;
}

/* Asks ``fill_bytes`` for the transitions ``items``' children need that are unknown. */
static int fill(Walker *w, Pairs *items) {
    Set lacking;
    Pairs bits = {0};
    if (set_init(&lacking, 64) < 0) return -1;
    for (Py_ssize_t i = 0; i < items->n; i++) {
        int64_t node = items->a[2 * i], state = items->a[2 * i + 1];
        const int32_t *row = w->trans + state * 256;
        int64_t child = w->trie.child_start[node], last = child + w->trie.child_count[node];
        for (; child < last; child++) {
            int32_t byte = w->trie.byte[child];
            if (row[byte] == UNKNOWN && lack(&lacking, &bits, state, byte) < 0) {
                set_free(&lacking);
                PyMem_Free(bits.a);
                return -1;
            }
        }
    }
    return ask(w, &lacking, &bits);
}

/* Steps ``items`` through the automaton: sources first (computing them finds suspensions),
 * then the missing transitions, then the children. */
static int step(Walker *w, Pairs *items, Pairs *next, Pairs *suspended) {
    for (Py_ssize_t i = 0; i < items->n; i++) {
        int64_t state = items->a[2 * i + 1];
        if (w->status[state] == SOURCES_UNKNOWN) {
            PyObject *r = call(w, w->state_sources, Py_BuildValue("(L)", (long long)state));
            if (!r) return -1;
            Py_DECREF(r);
        }
        if (w->status[state] == SOURCES_SUSPENDED && pairs_push(suspended, items->a[2 * i], state) < 0) return -1;
    }
    if (fill(w, items) < 0) return -1;
    for (Py_ssize_t i = 0; i < items->n; i++) {
        int64_t node = items->a[2 * i], state = items->a[2 * i + 1];
        const int32_t *row = w->trans + state * 256;
        int64_t child = w->trie.child_start[node], last = child + w->trie.child_count[node];
        for (; child < last; child++) {
            int32_t nxt = row[w->trie.byte[child]];
            if (nxt == DEAD) continue;
            if (nxt == UNKNOWN) {
                PyErr_SetString(PyExc_RuntimeError, "fill_bytes left a transition unknown");
                return -1;
            }
            mark(w, child);
            if (!w->trie.child_count[child]) continue;
            int added = set_add(&w->entered, (uint64_t)child, (uint64_t)nxt);
            if (added < 0 || count_pair(w) < 0) return -1;
            if (added && pairs_push(next, child, nxt) < 0) return -1;
        }
    }
    return 0;
}

/* Level by level: split states are followed terminal by terminal, the others stepped. */
static int run(Walker *w, Pairs *current, int do_follow, Pairs *suspended) {
    Pairs next = {0}, stepped = {0}, todo = {0};
    int failed = 0;
    while (current->n && !failed) {
        next.n = 0;
        stepped.n = 0;
        for (Py_ssize_t i = 0; i < current->n && !failed; i++) {
            int64_t node = current->a[2 * i], state = current->a[2 * i + 1];
            if (!w->trie.child_count[node]) continue;
            Py_ssize_t first = 0, count = 0;
            if (check_state(w, state) < 0 || (do_follow && ways_for(w, state, &first, &count) < 0)) {
                failed = 1;
                break;
            }
            for (Py_ssize_t k = first; k < first + count && !failed; k++)
                if (follow(w, k, node, &todo, &next) < 0) failed = 1;
            if (!count && pairs_push(&stepped, node, state) < 0) failed = 1;
        }
        if (!failed && stepped.n && step(w, &stepped, &next, suspended) < 0) failed = 1;
        Pairs swap = *current;
        *current = next;
        next = swap;
    }
    PyMem_Free(next.a);
    PyMem_Free(stepped.a);
    PyMem_Free(todo.a);
    return failed ? -1 : 0;
}

PyDoc_STRVAR(walk_doc,
             "walk(starts, follow, words, budget, callbacks) -> bytes\n\n"
             "Sets in ``words`` (32-bit, writable) the bits of the tokens that stay alive below the trie nodes of\n"
             "``starts``, a list of (nodes: int64 array, automaton state) pairs; ``follow``: split states are\n"
             "followed terminal by terminal. ``callbacks``: (ways_of(state), boundary_after(stack, terminal),\n"
             "state_sources(state), fill_bytes(state, bytes)). Returns the (node, state) pairs met at\n"
             "suspended states as native int64 pairs. Raises ``over_budget(budget)`` past ``budget`` pairs.");

/* Enters the walk's starts: (nodes, state) pairs, each node once per state. */
static int enter_starts(Walker *w, PyObject *starts, Pairs *current) {
    if (!PyList_Check(starts)) {
        PyErr_SetString(PyExc_TypeError, "starts must be a list of (nodes, state) pairs");
        return -1;
    }
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(starts); j++) {
        PyObject *nodes_obj;
        long long state;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(starts, j), "OL", &nodes_obj, &state)) return -1;
        Py_buffer b;
        if (PyObject_GetBuffer(nodes_obj, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
        int failed = 0;
        /* Trie nodes come as int64 (numpy's index type) or int32. */
        char kind = b.format ? b.format[strlen(b.format) - 1] : 'B';
        int wide = b.itemsize == 8 && (kind == 'l' || kind == 'q');
        if (!wide && !(b.itemsize == 4 && (kind == 'i' || kind == 'l'))) {
            PyErr_SetString(PyExc_TypeError, "start nodes: an int64 or int32 array");
            failed = 1;
        }
        for (Py_ssize_t i = 0; i < b.len / b.itemsize && !failed; i++) {
            int64_t node = wide ? ((const int64_t *)b.buf)[i] : ((const int32_t *)b.buf)[i];
            if (node < 0 || node >= w->trie.n_nodes) {
                PyErr_Format(PyExc_IndexError, "trie node %lld outside the trie", (long long)node);
                failed = 1;
                break;
            }
            int added = set_add(&w->entered, (uint64_t)node, (uint64_t)state);
            if (added < 0 || (added && pairs_push(current, node, state) < 0)) failed = 1;
        }
        PyBuffer_Release(&b);
        if (failed) return -1;
    }
    return 0;
}

static PyObject *Walker_walk(Walker *w, PyObject *args) {
    PyObject *starts, *words_obj, *callbacks;
    int do_follow;
    unsigned long long budget;
    if (!PyArg_ParseTuple(args, "OpOKO", &starts, &do_follow, &words_obj, &budget, &callbacks)) return NULL;
    if (w->busy) {
        PyErr_SetString(PyExc_RuntimeError, "a walker walks one walk at a time");
        return NULL;
    }
    if (!PyArg_ParseTuple(callbacks, "OOOO", &w->ways_of, &w->boundary_after, &w->state_sources, &w->fill_bytes))
        return NULL;
    Py_buffer words_b;
    if (PyObject_GetBuffer(words_obj, &words_b, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) return NULL;
    w->busy = 1;
    PyObject *result = NULL;
    Pairs current = {0}, suspended = {0};
    if (words_b.itemsize != 4) {
        PyErr_SetString(PyExc_TypeError, "words: 32-bit");
        goto done;
    }
    if (w->max_token >= words_b.len / 4 * 32) {
        PyErr_SetString(PyExc_ValueError, "words is too short for the trie's token ids");
        goto done;
    }
    w->words = words_b.buf;
    w->budget = (size_t)budget;
    /* A failed allocation while emptying them last time left them freed. */
    if ((!w->entered.k && set_init(&w->entered, 1024) < 0) || (!w->followed.k && set_init(&w->followed, 1024) < 0) ||
        read_automaton(w) < 0 || enter_starts(w, starts, &current) < 0)
        goto done;
    if (run(w, &current, do_follow, &suspended) < 0) goto done;
    result = PyBytes_FromStringAndSize((const char *)suspended.a, suspended.n * 2 * (Py_ssize_t)sizeof(int64_t));
done:
    w->busy = 0;
    w->ways_of = w->boundary_after = w->state_sources = w->fill_bytes = NULL;
    w->words = NULL;
    if ((set_clear(&w->entered, 1024) < 0 || set_clear(&w->followed, 1024) < 0) && result) Py_CLEAR(result);
    PyMem_Free(current.a);
    PyMem_Free(suspended.a);
    PyBuffer_Release(&words_b);
    return result;
}

static int trie_open(Trie *t, PyObject *arrays) {
    static const Py_ssize_t sizes[6] = {8, 8, 4, 8, 8, 8};
    if (!PyTuple_Check(arrays) || PyTuple_GET_SIZE(arrays) != 6) {
        PyErr_SetString(PyExc_TypeError, "trie must be a tuple of 6 arrays");
        return -1;
    }
    for (int i = 0; i < 6; i++) {
        int failed = PyObject_GetBuffer(PyTuple_GET_ITEM(arrays, i), &t->b[i], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT);
        if (!failed && t->b[i].itemsize != sizes[i]) {
            PyBuffer_Release(&t->b[i]);
            PyErr_Format(PyExc_TypeError, "trie array %d: items of %zd bytes", i, sizes[i]);
            failed = 1;
        }
        if (failed) {
            while (i--) PyBuffer_Release(&t->b[i]);
            return -1;
        }
    }
    t->held = 1;
    t->child_start = t->b[0].buf;
    t->child_count = t->b[1].buf;
    t->byte = t->b[2].buf;
    t->tok_start = t->b[3].buf;
    t->tok_count = t->b[4].buf;
    t->tok_ids = t->b[5].buf;
    t->n_nodes = t->b[1].len / 8;
    return 0;
}

static void trie_close(Trie *t) {
    if (t->held)
        for (int i = 0; i < 6; i++) PyBuffer_Release(&t->b[i]);
    t->held = 0;
}

static int read_trie(Walker *w, PyObject *arrays) {
    if (trie_open(&w->trie, arrays) < 0) return -1;
    w->max_token = -1;
    for (Py_ssize_t i = 0; i < w->trie.b[5].len / 8; i++) {
        if (w->trie.tok_ids[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "a negative token id in the trie");
            return -1;
        }
        if (w->trie.tok_ids[i] > w->max_token) w->max_token = w->trie.tok_ids[i];
    }
    return 0;
}

static void Walker_dealloc(Walker *w) {
    for (int i = 0; i < 3; i++)
        if (w->tables[i].held) PyBuffer_Release(&w->tables[i].b);
    trie_close(&w->trie);
    for (Py_ssize_t i = 0; i < w->n_ways; i++) {
        Py_DECREF(w->ways[i].table_obj);
        Py_DECREF(w->ways[i].accepting_obj);
        Py_DECREF(w->ways[i].stack);
        Py_DECREF(w->ways[i].terminal);
    }
    PyMem_Free(w->ways);
    set_free(&w->state_ways);
    set_free(&w->entered);
    set_free(&w->followed);
    Py_XDECREF(w->automaton);
    Py_XDECREF(w->over_budget);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *Walker_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *trie, *automaton, *over_budget;
    static char *names[] = {"trie", "automaton", "over_budget", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO", names, &trie, &automaton, &over_budget)) return NULL;
    Walker *w = (Walker *)type->tp_alloc(type, 0);
    if (!w) return NULL;
    w->tables[0] = (Table){.name = "trans", .itemsize = 4};
    w->tables[1] = (Table){.name = "splits", .itemsize = 1};
    w->tables[2] = (Table){.name = "source_status", .itemsize = 1};
    w->automaton = automaton;
    Py_INCREF(automaton);
    w->over_budget = over_budget;
    Py_INCREF(over_budget);
    if (read_trie(w, trie) < 0 || set_init(&w->state_ways, 64) < 0 || set_init(&w->entered, 1024) < 0 ||
        set_init(&w->followed, 1024) < 0 || read_automaton(w) < 0) {
        Py_DECREF(w);
        return NULL;
    }
    return (PyObject *)w;
}

static PyObject *Walker_held_bytes(Walker *w, PyObject *unused) {
    (void)unused;
    size_t slots = w->state_ways.mask + w->entered.mask + w->followed.mask + 3;
    return PyLong_FromSsize_t(w->cap_ways * (Py_ssize_t)sizeof(Way) + (Py_ssize_t)slots * 20);
}

/* ---- byte DFAs read from Python -------------------------------------------------------- */

/* Releases the buffers among ``held`` that were taken (a failed call leaves the rest empty). */
static void release_held(Py_buffer *const *held, int n) {
    for (int i = 0; i < n; i++)
        if (held[i]->obj) PyBuffer_Release(held[i]);
}

static int buffer_of(PyObject *obj, Py_buffer *b, int flags, Py_ssize_t itemsize, const char *name) {
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | flags) < 0) return -1;
    if (b->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: items of %zd bytes", name, itemsize);
        PyBuffer_Release(b);
        b->obj = NULL;
        return -1;
    }
    return 0;
}

/* A byte DFA's flat table (``ByteDFA.flat_table``) with its accepting flags, held. */
typedef struct {
    const int32_t *table;
    const uint8_t *accepting;
    int32_t dead;
    Py_ssize_t n_states;
} Dfa;

static int dfa_open(Dfa *d, Py_buffer *tb, Py_buffer *ab, PyObject *table, PyObject *accepting, const char *name) {
    if (buffer_of(table, tb, 0, 4, name) < 0 || buffer_of(accepting, ab, 0, 1, "accepting flags") < 0) return -1;
    Py_ssize_t entries = tb->len / 4;
    if (entries < 256 || entries % 256 || ab->len < entries / 256 - 1) {
        PyErr_Format(PyExc_ValueError, "%s: whole rows, one flag per state but the dead one", name);
        return -1;
    }
    d->table = tb->buf;
    d->accepting = ab->buf;
    d->dead = (int32_t)(entries - 256);
    d->n_states = entries / 256 - 1;
    return 0;
}

static int dfa_entry(const Dfa *d, int32_t state) {
    if (state < 0 || state > d->dead || state % 256) {
        PyErr_Format(PyExc_ValueError, "table entry %d: not a state times 256", state);
        return -1;
    }
    return 0;
}

/* ---- one DFA over the whole trie --------------------------------------------------------- */

PyDoc_STRVAR(dfa_pass_doc,
             "dfa_pass(trie, levels, table, accepting, start, words) -> bytes\n\n"
             "Reads every trie path in one byte DFA from ``start`` (a state times 256). ``levels``: each node's\n"
             "parent, each level's first node and one past the last, each token id's node, as int64 arrays.\n"
             "``table``: int32, entry ``state * 256 + byte`` the next state times 256, its last row the dead\n"
             "state, mapped to itself; ``accepting``: one byte per state. Sets in ``words`` (32-bit, writable)\n"
             "the bits of the tokens whose bytes the DFA reads alive, and returns, as native int64 in ascending\n"
             "order, the nodes other than the root, with bytes below, where it accepts. Costs the live nodes'\n"
             "children while they are a small part of their level, then each node of the levels below once.");

/* Live nodes' children at most one in this many of their level: stepped one by one. */
#define SPARSE_SHARE 4

typedef struct {
    Dfa dfa;
    uint32_t *words;
    Py_ssize_t n_words;
    Pairs ends;
} Pass;

/* Points a pass at its words and checks where it starts. */
static int pass_begin(Pass *p, const Py_buffer *words, long long start) {
    p->words = words->buf;
    p->n_words = words->len / 4;
    if (start < 0 || start >= p->dfa.dead || start % 256) {
        PyErr_Format(PyExc_ValueError, "start %lld: not a live state times 256", start);
        return -1;
    }
    return 0;
}

/* A live node's tokens' bits. */
static int pass_tokens(Pass *p, const Trie *t, int64_t node) {
    for (int64_t k = t->tok_start[node], end = k + t->tok_count[node]; k < end; k++) {
        int64_t id = t->tok_ids[k];
        if (id < 0 || id >= p->n_words * 32) {
            PyErr_Format(PyExc_ValueError, "token id %lld: outside words", (long long)id);
            return -1;
        }
        p->words[id >> 5] |= (uint32_t)1 << (id & 31);
    }
    return 0;
}

/* A pass's ends as native int64 bytes: the pairs' second halves dropped in place. */
static PyObject *pass_ends(Pass *p) {
    for (Py_ssize_t i = 0; i < p->ends.n; i++) p->ends.a[i] = p->ends.a[2 * i];
    return PyBytes_FromStringAndSize((const char *)p->ends.a, p->ends.n * (Py_ssize_t)sizeof(int64_t));
}

/* A live node: its tokens' bits, and an end where the DFA accepts with bytes below. */
static int pass_reached(Pass *p, const Trie *t, int64_t node, int32_t state) {
    if (pass_tokens(p, t, node) < 0) return -1;
    if (t->child_count[node] && p->dfa.accepting[state >> 8] && pairs_push(&p->ends, node, 0) < 0) return -1;
    return 0;
}

/* The states of a pass's whole levels and a bit per node alive, kept between passes (1.1 MB for
 * Llama-3.2); the GIL serialises passes. */
static void *scratch;
static Py_ssize_t scratch_size; /* in nodes */

/* Level by level: the live nodes' children one by one while they are few (a pattern keeps a few
 * thousand of the trie's hundreds of thousands of nodes), then whole levels in order, each node
 * from its parent's state (a string's content keeps nearly all; pushing each cost 4 ms). Nodes are
 * numbered level by level and children in their parents' order, so the ends come out ascending. */
static int pass_levels(Pass *p, const Trie *t, const int64_t *parent, const int64_t *bounds, Py_ssize_t levels,
                       const int64_t *node_of_id, Py_ssize_t n_ids, int32_t start) {
    Pairs current = {0}, next = {0};
    int failed = pairs_push(&current, 0, start) < 0;
    Py_ssize_t depth = 0; /* of the nodes in ``current`` */
    while (!failed && current.n && depth + 1 < levels) {
        int64_t children = 0;
        for (Py_ssize_t i = 0; i < current.n; i++) children += t->child_count[current.a[2 * i]];
        int64_t first = bounds[depth + 1], width = bounds[depth + 2] - first;
        if (depth > 0 && children * SPARSE_SHARE >= width) break;
        next.n = 0;
        for (Py_ssize_t i = 0; i < current.n && !failed; i++) {
            int64_t node = current.a[2 * i];
            const int32_t *row = p->dfa.table + current.a[2 * i + 1];
            for (int64_t child = t->child_start[node], last = child + t->child_count[node]; child < last; child++) {
                int32_t nxt = row[t->byte[child]];
                if (nxt == p->dfa.dead) continue;
                if (dfa_entry(&p->dfa, nxt) < 0 || pass_reached(p, t, child, nxt) < 0 ||
                    (t->child_count[child] && pairs_push(&next, child, nxt) < 0)) {
                    failed = 1;
                    break;
                }
            }
        }
        Pairs swap = current;
        current = next;
        next = swap;
        depth++;
    }
    if (!failed && current.n && depth + 1 < levels) {
        /* Whole levels, each node stepped from its parent's state in the scratch array (the nodes
         * of level ``depth`` dead but for the live ones), ends noted on the way, and the tokens
         * read off the alive bits after, id by id: per node a few bytes read in order. The bits
         * have one more, always clear, for ids without bytes. */
        Py_ssize_t n_bits = (t->n_nodes + 1 + 63) / 64;
        if (scratch_size < t->n_nodes) {
            void *grown = PyMem_Realloc(scratch, (size_t)(t->n_nodes + 1) * sizeof(int32_t) + (size_t)n_bits * 8);
            if (!grown) {
                PyErr_NoMemory();
                failed = 1;
            } else {
                scratch = grown;
                scratch_size = t->n_nodes;
            }
        }
        if (!failed) {
            int32_t *states = scratch;
            uint64_t *alive_bits = (uint64_t *)(states + t->n_nodes + (t->n_nodes & 1));
            memset(alive_bits, 0, (size_t)n_bits * 8);
            for (int64_t node = bounds[depth]; node < bounds[depth + 1]; node++) states[node] = p->dfa.dead;
            for (Py_ssize_t i = 0; i < current.n; i++) states[current.a[2 * i]] = (int32_t)current.a[2 * i + 1];
            /* Accepting flags with the dead state's, clear: the ends are found as levels are stepped. */
            uint8_t *ends_at = PyMem_Malloc((size_t)(p->dfa.n_states + 1));
            if (!ends_at) {
                PyErr_NoMemory();
                failed = 1;
            } else {
                memcpy(ends_at, p->dfa.accepting, (size_t)p->dfa.n_states);
                ends_at[p->dfa.n_states] = 0;
            }
            for (Py_ssize_t d = depth + 1; d < levels && !failed; d++) {
                /* The dead state, the largest, has every bit no live one has all of. */
                const int32_t *table = p->dfa.table, dead = p->dfa.dead;
                int32_t alive = dead;
                uint32_t bad = 0, top = (uint32_t)dead >> 8;
                uint64_t word = 0; /* the alive bits of this run of 64 nodes, stored at its end */
                int64_t node = bounds[d], level_end = bounds[d + 1];
                for (; node < level_end; node++) {
                    int32_t nxt = table[states[parent[node]] + t->byte[node]];
                    states[node] = nxt;
                    alive &= nxt;
                    bad |= ((uint32_t)nxt > (uint32_t)dead) | ((uint32_t)nxt & 255);
                    word |= (uint64_t)(nxt != dead) << (node & 63);
                    if ((node & 63) == 63) {
                        alive_bits[node >> 6] |= word;
                        word = 0;
                    }
                    uint32_t at = (uint32_t)nxt >> 8;
                    if (ends_at[at > top ? top : at] && t->child_count[node] && pairs_push(&p->ends, node, 0) < 0) {
                        failed = 1;
                        break;
                    }
                }
                alive_bits[(level_end - 1) >> 6] |= word;
                if (!failed && bad) { /* before any entry of it is read as a row */
                    PyErr_SetString(PyExc_ValueError, "a table entry is not a state times 256");
                    failed = 1;
                }
                if (alive == dead) break;
            }
            PyMem_Free(ends_at);
            for (Py_ssize_t id = 0; id < n_ids && !failed; id++) {
                int64_t node = node_of_id[id];
                if (node < 0 || node > t->n_nodes) {
                    PyErr_Format(PyExc_ValueError, "token id %lld: at node %lld, outside the trie", (long long)id,
                                 (long long)node);
                    failed = 1;
                    break;
                }
                if (!(alive_bits[node >> 6] >> (node & 63) & 1)) continue;
                if (id >= p->n_words * 32) {
                    PyErr_Format(PyExc_ValueError, "token id %lld: outside words", (long long)id);
                    failed = 1;
                } else
                    p->words[id >> 5] |= (uint32_t)1 << (id & 31);
            }
        }
    }
    PyMem_Free(current.a);
    PyMem_Free(next.a);
    return failed ? -1 : 0;
}

static PyObject *dfa_pass(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *trie_obj, *parent_obj, *bounds_obj, *ids_obj, *table_obj, *accepting_obj, *words_obj;
    long long start;
    if (!PyArg_ParseTuple(args, "O(OOO)OOLO", &trie_obj, &parent_obj, &bounds_obj, &ids_obj, &table_obj,
                          &accepting_obj, &start, &words_obj))
        return NULL;
    Trie t = {0};
    Py_buffer pb = {0}, lb = {0}, ib = {0}, tb = {0}, ab = {0}, wb = {0};
    Pass p = {0};
    PyObject *result = NULL;
    if (trie_open(&t, trie_obj) < 0) return NULL;
    if (buffer_of(parent_obj, &pb, 0, 8, "parents") < 0 || buffer_of(bounds_obj, &lb, 0, 8, "levels") < 0 ||
        buffer_of(ids_obj, &ib, 0, 8, "nodes of ids") < 0 ||
        dfa_open(&p.dfa, &tb, &ab, table_obj, accepting_obj, "table") < 0 ||
        buffer_of(words_obj, &wb, PyBUF_WRITABLE, 4, "words") < 0)
        goto done;
    Py_ssize_t levels = lb.len / 8 - 1;
    const int64_t *bounds = lb.buf;
    if (pb.len / 8 < t.n_nodes || levels < 1 || bounds[0] != 0 || bounds[levels] != t.n_nodes) {
        PyErr_SetString(PyExc_ValueError, "levels: a parent per node, level bounds from 0 to the node count");
        goto done;
    }
    if (pass_begin(&p, &wb, start) < 0) goto done;
    if (pass_levels(&p, &t, pb.buf, bounds, levels, ib.buf, ib.len / 8, (int32_t)start) < 0) goto done;
    result = pass_ends(&p);
done:
    PyMem_Free(p.ends.a);
    release_held((Py_buffer *[]){&wb, &ab, &tb, &ib, &lb, &pb}, 6);
    trie_close(&t);
    return result;
}

/* ---- one DFA below given nodes ------------------------------------------------------------ */

PyDoc_STRVAR(below_pass_doc,
             "below_pass(trie, table, accepting, start, nodes, words, budget) -> bytes | None\n\n"
             "Reads on below the trie ``nodes`` (int64) in one byte DFA (``table`` and ``accepting`` as for\n"
             "``dfa_pass``) from ``start`` (a state times 256). Sets in ``words`` (32-bit, writable) the bits of\n"
             "the tokens strictly below the nodes that the DFA reads alive, and returns, as native int64, the\n"
             "nodes (``nodes`` included) with bytes below where it accepts; None once more than ``budget``\n"
             "(node, state) pairs would be read on from. Each pair goes on once: from starts one below\n"
             "another, readings meet. Costs the live nodes' children.");

static PyObject *below_pass(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *trie_obj, *table_obj, *accepting_obj, *nodes_obj, *words_obj;
    long long start;
    Py_ssize_t budget;
    if (!PyArg_ParseTuple(args, "OOOLOOn", &trie_obj, &table_obj, &accepting_obj, &start, &nodes_obj, &words_obj,
                          &budget))
        return NULL;
    Trie t = {0};
    Py_buffer tb = {0}, ab = {0}, nb = {0}, wb = {0};
    Pass p = {0};
    Pairs todo = {0};
    Set seen = {0};
    PyObject *result = NULL;
    if (trie_open(&t, trie_obj) < 0) return NULL;
    if (dfa_open(&p.dfa, &tb, &ab, table_obj, accepting_obj, "table") < 0 ||
        buffer_of(nodes_obj, &nb, 0, 8, "nodes") < 0 || buffer_of(words_obj, &wb, PyBUF_WRITABLE, 4, "words") < 0 ||
        set_init(&seen, 1024) < 0)
        goto done;
    if (pass_begin(&p, &wb, start) < 0) goto done;
    const int64_t *nodes = nb.buf;
    for (Py_ssize_t i = 0; i < nb.len / 8; i++) {
        int64_t node = nodes[i];
        if (node < 0 || node >= t.n_nodes) {
            PyErr_Format(PyExc_IndexError, "trie node %lld outside the trie", (long long)node);
            goto done;
        }
        int added = set_add(&seen, (uint64_t)node, (uint64_t)start);
        if (added < 0) goto done;
        if (!added || !t.child_count[node]) continue;
        if ((p.dfa.accepting[start >> 8] && pairs_push(&p.ends, node, 0) < 0) ||
            pairs_push(&todo, node, start) < 0)
            goto done;
    }
    while (todo.n) {
        if ((Py_ssize_t)seen.n > budget) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        todo.n--;
        int64_t at = todo.a[2 * todo.n];
        const int32_t *row = p.dfa.table + todo.a[2 * todo.n + 1];
        for (int64_t child = t.child_start[at], last = child + t.child_count[at]; child < last; child++) {
            int32_t nxt = row[t.byte[child]];
            if (nxt == p.dfa.dead) continue;
            /* A start's tokens are below the starts above it, read alike or not. */
            if (dfa_entry(&p.dfa, nxt) < 0 || pass_tokens(&p, &t, child) < 0) goto done;
            if (!t.child_count[child]) continue;
            int added = set_add(&seen, (uint64_t)child, (uint64_t)nxt);
            if (added < 0) goto done;
            if (added && ((p.dfa.accepting[nxt >> 8] && pairs_push(&p.ends, child, 0) < 0) ||
                          pairs_push(&todo, child, nxt) < 0))
                goto done;
        }
    }
    result = pass_ends(&p);
done:
    PyMem_Free(p.ends.a);
    PyMem_Free(todo.a);
    if (seen.k) set_free(&seen);
    release_held((Py_buffer *[]){&wb, &nb, &ab, &tb}, 4);
    trie_close(&t);
    return result;
}

/* ---- subset construction of a byte NFA ------------------------------------------------- */

PyDoc_STRVAR(determinise_doc,
             "determinise(move_start, move_lo, move_hi, move_target, eps_start, eps_target, cuts, start, end,\n"
             "            check) -> (table, accepting)\n\n"
             "The DFA of a byte NFA by subset construction (``_byte_nfa._determinised``, which documents it).\n"
             "Node ``i``'s moves are ``move_start[i]:move_start[i + 1]``, each reading the byte classes\n"
             "``move_lo .. move_hi - 1`` into ``move_target``; its epsilon moves likewise; class ``c`` is the\n"
             "bytes ``cuts[c] .. cuts[c + 1] - 1`` (all int32). ``check(n)`` is called as the DFA grows (it\n"
             "raises to stop it). Returns the rows of 256 next states (int32, -1 for none; state 0 the\n"
             "closure of ``start``) and a byte per state, 1 where the subset holds ``end``.");

typedef struct {
    int32_t *a;
    Py_ssize_t n, cap;
} Ints;

/* Capacity for ``cap`` ints, the ones held kept. */
static int ints_room(Ints *v, Py_ssize_t cap) {
    int32_t *a = PyMem_Realloc(v->a, (size_t)cap * sizeof(int32_t));
    if (!a) {
        PyErr_NoMemory();
        return -1;
    }
    v->a = a;
    v->cap = cap;
    return 0;
}

static int ints_push(Ints *v, int32_t x) {
    if (v->n == v->cap && ints_room(v, v->cap ? 2 * v->cap : 256) < 0) return -1;
    v->a[v->n++] = x;
    return 0;
}

/* ``n`` ints, unset (the ones held dropped). */
static int ints_reserve(Ints *v, Py_ssize_t n) {
    if (n > v->cap && ints_room(v, n) < 0) return -1;
    v->n = n;
    return 0;
}

static int compare_ints(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* The subsets found, each a sorted run of ``nodes``, found again through an open-addressing table. */
typedef struct {
    Ints nodes, offset; /* subset i: nodes.a[offset.a[i] .. offset.a[i + 1]] */
    int32_t *slot;      /* subset index + 1, 0 where free */
    uint64_t *slot_hash;
    size_t mask;
} Subsets;

static uint64_t hash_ints(const int32_t *a, Py_ssize_t n) {
    uint64_t h = (uint64_t)n;
    for (Py_ssize_t i = 0; i < n; i++) h = mix(h, (uint64_t)(uint32_t)a[i]);
    return h;
}

static int subsets_grow(Subsets *s) {
    size_t size = s->mask ? 2 * (s->mask + 1) : 1024;
    int32_t *slot = PyMem_Calloc(size, sizeof(int32_t));
    uint64_t *slot_hash = PyMem_Malloc(size * sizeof(uint64_t));
    if (!slot || !slot_hash) {
        PyMem_Free(slot);
        PyMem_Free(slot_hash);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; s->mask && i <= s->mask; i++) {
        if (!s->slot[i]) continue;
        size_t j = s->slot_hash[i] & (size - 1);
        while (slot[j]) j = (j + 1) & (size - 1);
        slot[j] = s->slot[i];
        slot_hash[j] = s->slot_hash[i];
    }
    PyMem_Free(s->slot);
    PyMem_Free(s->slot_hash);
    s->slot = slot;
    s->slot_hash = slot_hash;
    s->mask = size - 1;
    return 0;
}

/* The index of the sorted subset ``a[0..n)``, added if new (``*added`` set); -1 on error. */
static int32_t subsets_find(Subsets *s, const int32_t *a, Py_ssize_t n, int *added) {
    Py_ssize_t count = s->offset.n - 1;
    if ((size_t)(count + 1) * 2 > s->mask + 1 && subsets_grow(s) < 0) return -1;
    uint64_t h = hash_ints(a, n);
    size_t j = h & s->mask;
    for (; s->slot[j]; j = (j + 1) & s->mask) {
        if (s->slot_hash[j] != h) continue;
        int32_t i = s->slot[j] - 1;
        Py_ssize_t from = s->offset.a[i], len = s->offset.a[i + 1] - from;
        if (len == n && !memcmp(s->nodes.a + from, a, (size_t)n * sizeof(int32_t))) {
            *added = 0;
            return i;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (ints_push(&s->nodes, a[i]) < 0) return -1;
    if (ints_push(&s->offset, (int32_t)s->nodes.n) < 0) return -1;
    s->slot[j] = (int32_t)count + 1;
    s->slot_hash[j] = h;
    *added = 1;
    return (int32_t)count;
}

/* Hands ``check`` the states found so far, or the subsets' nodes in thousands where more: the
 * subsets of a repetition of optional parts hold thousands of nodes each, and the state budget
 * then bounds their memory too (20,000 states: 80 MB of nodes). */
static int check_budget(PyObject *check, const Subsets *subsets) {
    Py_ssize_t states = subsets->offset.n - 1, weight = subsets->nodes.n / 1024;
    PyObject *r = PyObject_CallFunction(check, "n", states > weight ? states : weight);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* The nodes reached from ``from[0..n)`` by epsilon moves (themselves included), sorted, into
 * ``found``: one search over the set, each node once (``stamp`` marks them with ``epoch``). */
static int epsilon_closure(const int32_t *from, Py_ssize_t n, const int32_t *eps_start, const int32_t *eps_target,
                           int32_t *stamp, int32_t epoch, Ints *stack, Ints *found) {
    stack->n = 0;
    found->n = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (stamp[from[i]] != epoch) {
            stamp[from[i]] = epoch;
            if (ints_push(stack, from[i]) < 0) return -1;
        }
    while (stack->n) {
        int32_t x = stack->a[--stack->n];
        if (ints_push(found, x) < 0) return -1;
        for (int32_t e = eps_start[x]; e < eps_start[x + 1]; e++)
            if (stamp[eps_target[e]] != epoch) {
                stamp[eps_target[e]] = epoch;
                if (ints_push(stack, eps_target[e]) < 0) return -1;
            }
    }
    qsort(found->a, (size_t)found->n, sizeof(int32_t), compare_ints);
    return 0;
}

/* What is wrong with the NFA arrays ``determinise`` takes (in its argument order), or NULL. */
static const char *nfa_unfit(const Py_buffer *b, Py_ssize_t nodes, Py_ssize_t classes, int32_t start, int32_t end) {
    const int32_t *move_start = b[0].buf, *move_lo = b[1].buf, *move_hi = b[2].buf, *move_target = b[3].buf;
    const int32_t *eps_start = b[4].buf, *eps_target = b[5].buf, *cuts = b[6].buf;
    Py_ssize_t moves = b[3].len / 4, eps = b[5].len / 4;
    if (nodes < 1 || b[4].len != b[0].len || b[1].len != b[3].len || b[2].len != b[3].len || classes < 1 ||
        classes > 256 || cuts[0] != 0 || cuts[classes] != 256 || start < 0 || start >= nodes || end < 0 ||
        end >= nodes || move_start[0] != 0 || eps_start[0] != 0 || move_start[nodes] != moves || eps_start[nodes] != eps)
        return "inconsistent NFA arrays";
    for (Py_ssize_t i = 0; i < nodes; i++)
        if (move_start[i + 1] < move_start[i] || eps_start[i + 1] < eps_start[i]) return "inconsistent NFA arrays";
    for (Py_ssize_t i = 0; i < moves; i++)
        if (move_target[i] < 0 || move_target[i] >= nodes || move_lo[i] < 0 || move_hi[i] > classes ||
            move_lo[i] >= move_hi[i])
            return "a move out of range";
    for (Py_ssize_t i = 0; i < eps; i++)
        if (eps_target[i] < 0 || eps_target[i] >= nodes) return "an epsilon move out of range";
    return NULL;
}

static PyObject *determinise(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *objs[7], *check, *result = NULL;
    int32_t start, end;
    if (!PyArg_ParseTuple(args, "OOOOOOOiiO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6],
                          &start, &end, &check))
        return NULL;
    static const char *names[] = {"move_start", "move_lo", "move_hi", "move_target", "eps_start", "eps_target", "cuts"};
    Py_buffer b[7] = {{0}};
    Subsets subsets = {{0}};
    Ints stack = {0}, found = {0}, rows = {0}, targets = {0};
    int32_t *stamp = NULL;
    uint8_t *accepting = NULL;
    for (int i = 0; i < 7; i++)
        if (buffer_of(objs[i], &b[i], 0, 4, names[i]) < 0) goto done;
    const int32_t *move_start = b[0].buf, *move_lo = b[1].buf, *move_hi = b[2].buf, *move_target = b[3].buf;
    const int32_t *eps_start = b[4].buf, *eps_target = b[5].buf, *cuts = b[6].buf;
    Py_ssize_t nodes = b[0].len / 4 - 1, classes = b[6].len / 4 - 1;
    const char *unfit = nfa_unfit(b, nodes, classes, start, end);
    if (unfit) {
        PyErr_Format(PyExc_ValueError, "determinise: %s", unfit);
        goto done;
    }
    stamp = PyMem_Calloc((size_t)nodes, sizeof(int32_t));
    if (!stamp) {
        PyErr_NoMemory();
        goto done;
    }
    int32_t epoch = 0;
    if (epsilon_closure(&start, 1, eps_start, eps_target, stamp, ++epoch, &stack, &found) < 0) goto done;
    if (ints_push(&subsets.offset, 0) < 0) goto done;
    int added;
    if (subsets_find(&subsets, found.a, found.n, &added) < 0) goto done;
    for (Py_ssize_t current = 0; current < subsets.offset.n - 1; current++) {
        int32_t row[256];
        for (int i = 0; i < 256; i++) row[i] = -1;
        /* The current subset's move targets grouped by class (a counting sort): a class's targets
         * in the same order as an earlier class's lead to the same subset, found without a
         * closure (bytes that only some other node's move tells apart: a URL pattern's states
         * read 26 classes on average, 6 of them distinct). */
        Py_ssize_t count[257] = {0};
        Py_ssize_t from = subsets.offset.a[current], to = subsets.offset.a[current + 1];
        for (Py_ssize_t i = from; i < to; i++) {
            int32_t node = subsets.nodes.a[i];
            for (int32_t m = move_start[node]; m < move_start[node + 1]; m++)
                for (int32_t c = move_lo[m]; c < move_hi[m]; c++) count[c + 1]++;
        }
        for (Py_ssize_t c = 0; c < classes; c++) count[c + 1] += count[c];
        if (ints_reserve(&targets, count[classes]) < 0) goto done;
        {
            Py_ssize_t place[256];
            memcpy(place, count, (size_t)classes * sizeof(Py_ssize_t));
            for (Py_ssize_t i = from; i < to; i++) {
                int32_t node = subsets.nodes.a[i];
                for (int32_t m = move_start[node]; m < move_start[node + 1]; m++)
                    for (int32_t c = move_lo[m]; c < move_hi[m]; c++) targets.a[place[c]++] = move_target[m];
            }
        }
        uint64_t seen_hash[256];
        Py_ssize_t seen_class[256], distinct = 0;
        int32_t seen_index[256];
        for (Py_ssize_t c = 0; c < classes; c++) {
            Py_ssize_t lo = count[c], hi = count[c + 1];
            if (lo == hi) continue;
            uint64_t h = hash_ints(targets.a + lo, hi - lo);
            int32_t index = -1;
            for (Py_ssize_t k = 0; k < distinct && index < 0; k++) {
                Py_ssize_t other = seen_class[k];
                if (seen_hash[k] == h && count[other + 1] - count[other] == hi - lo &&
                    !memcmp(targets.a + lo, targets.a + count[other], (size_t)(hi - lo) * sizeof(int32_t)))
                    index = seen_index[k];
            }
            if (index < 0) {
                if (epsilon_closure(targets.a + lo, hi - lo, eps_start, eps_target, stamp, ++epoch, &stack, &found) < 0)
                    goto done;
                index = subsets_find(&subsets, found.a, found.n, &added);
                if (index < 0) goto done;
                if (added && (subsets.offset.n - 1) % 64 == 0 && check_budget(check, &subsets) < 0) goto done;
                seen_hash[distinct] = h;
                seen_class[distinct] = c;
                seen_index[distinct++] = index;
            }
            for (int byte = cuts[c]; byte < cuts[c + 1]; byte++) row[byte] = index;
        }
        for (int i = 0; i < 256; i++)
            if (ints_push(&rows, row[i]) < 0) goto done;
    }
    {
        Py_ssize_t n = subsets.offset.n - 1;
        if (check_budget(check, &subsets) < 0) goto done;
        accepting = PyMem_Malloc((size_t)n);
        if (!accepting) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            accepting[i] = 0;
            for (Py_ssize_t j = subsets.offset.a[i]; j < subsets.offset.a[i + 1]; j++)
                if (subsets.nodes.a[j] == end) accepting[i] = 1;
        }
        result = Py_BuildValue("(y#y#)", (const char *)rows.a, rows.n * 4, (const char *)accepting, n);
    }
done:
    release_held((Py_buffer *[]){&b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6]}, 7);
    PyMem_Free(subsets.nodes.a);
    PyMem_Free(subsets.offset.a);
    PyMem_Free(subsets.slot);
    PyMem_Free(subsets.slot_hash);
    PyMem_Free(stack.a);
    PyMem_Free(found.a);
    PyMem_Free(targets.a);
    PyMem_Free(rows.a);
    PyMem_Free(stamp);
    PyMem_Free(accepting);
    return result;
}

/* ---- the states of a byte DFA that can still accept ------------------------------------- */

PyDoc_STRVAR(live_states_doc,
             "live_states(table, accepting) -> bytes\n\n"
             "A byte per state of a DFA (``table``: int32, n rows of 256, -1 for no transition;\n"
             "``accepting``: a byte per state), 1 where some word leads from it to an accepting state.\n"
             "Found backwards from the accepting states over the table's edges, each edge once.");

static PyObject *live_states(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *table_obj, *accepting_obj, *result = NULL;
    if (!PyArg_ParseTuple(args, "OO", &table_obj, &accepting_obj)) return NULL;
    Py_buffer tb = {0}, ab = {0};
    Py_ssize_t *into = NULL;
    int32_t *sources = NULL, *todo = NULL;
    uint8_t *live = NULL;
    if (buffer_of(table_obj, &tb, 0, 4, "table") < 0 || buffer_of(accepting_obj, &ab, 0, 1, "accepting flags") < 0)
        goto done;
    Py_ssize_t n = ab.len;
    if (tb.len != n * 1024) {
        PyErr_SetString(PyExc_ValueError, "table: n rows of 256 int32; accepting: n flags");
        goto done;
    }
    const int32_t *table = tb.buf;
    const uint8_t *accepting = ab.buf;
    /* The edges into each state (into[q] .. into[q + 1] of ``sources``), a counting sort. */
    into = PyMem_Calloc((size_t)n + 2, sizeof(Py_ssize_t));
    live = PyMem_Calloc((size_t)n + 1, 1);
    todo = PyMem_Malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!into || !live || !todo) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n * 256; i++) {
        if (table[i] >= n || table[i] < -1) {
            PyErr_SetString(PyExc_ValueError, "table: a transition out of range");
            goto done;
        }
        if (table[i] >= 0) into[table[i] + 2]++;
    }
    for (Py_ssize_t q = 0; q < n; q++) into[q + 2] += into[q + 1];
    sources = PyMem_Malloc(((size_t)into[n + 1] + 1) * sizeof(int32_t));
    if (!sources) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n * 256; i++)
        if (table[i] >= 0) sources[into[table[i] + 1]++] = (int32_t)(i / 256);
    /* into[q] .. into[q + 1] now bound the edges into q. */
    Py_ssize_t n_todo = 0;
    for (Py_ssize_t q = 0; q < n; q++)
        if (accepting[q]) {
            live[q] = 1;
            todo[n_todo++] = (int32_t)q;
        }
    while (n_todo) {
        int32_t q = todo[--n_todo];
        for (Py_ssize_t e = into[q]; e < into[q + 1]; e++) {
            int32_t p = sources[e];
            if (!live[p]) {
                live[p] = 1;
                todo[n_todo++] = p;
            }
        }
    }
    result = PyBytes_FromStringAndSize((const char *)live, n);
done:
    release_held((Py_buffer *[]){&tb, &ab}, 2);
    PyMem_Free(into);
    PyMem_Free(sources);
    PyMem_Free(todo);
    PyMem_Free(live);
    return result;
}

/* ---- the minimal automaton of a byte DFA ----------------------------------------------- */

PyDoc_STRVAR(equivalent_states_doc,
             "equivalent_states(table, accepting) -> bytes\n\n"
             "Per state of a byte DFA its class of equivalent states (int32, classes numbered in the order\n"
             "of their first state, so state 0 is in class 0): ``table`` (int32, n rows of 256, -1 for no\n"
             "transition), ``accepting`` (one byte per state). Bytes with equal columns are read as one\n"
             "symbol; then Hopcroft's partition refinement, O(k n log n) for k such symbols. A missing\n"
             "transition goes to a sink no live state is equivalent to.");

/* Where state ``p`` goes on ``byte``; the sink ``n`` where it has no transition (and from the sink). */
static int32_t target_or_sink(const int32_t *table, Py_ssize_t n, Py_ssize_t p, int byte) {
    int32_t q = p < n ? table[p * 256 + byte] : -1;
    return q >= 0 ? q : (int32_t)n;
}

static PyObject *equivalent_states(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *table_obj, *accepting_obj, *result = NULL;
    if (!PyArg_ParseTuple(args, "OO", &table_obj, &accepting_obj)) return NULL;
    Py_buffer tb = {0}, ab = {0};
    if (buffer_of(table_obj, &tb, 0, 4, "table") < 0 || buffer_of(accepting_obj, &ab, 0, 1, "accepting flags") < 0)
        goto done;
    if (tb.len != ab.len * 1024) {
        PyErr_SetString(PyExc_ValueError, "table: n rows of 256 int32; accepting: n flags");
        goto done;
    }
    const int32_t *table = tb.buf;
    const uint8_t *accepting = ab.buf;
    Py_ssize_t n = ab.len, total = n + 1; /* state n: the sink of missing transitions */
    /* Bytes with equal columns are one symbol: its first byte stands for it. Columns are grouped
     * by a hash, then checked in one pass over the rows (column by column, each read would be a
     * cache miss); a byte whose column differs from its group's is a symbol of its own. */
    int symbol_byte[256], candidate[256];
    Py_ssize_t k = 0;
    {
        uint64_t hash[256];
        int32_t low = 0, high = 0;
        for (int b = 0; b < 256; b++) hash[b] = 0;
        for (Py_ssize_t q = 0; q < n; q++) {
            const int32_t *row = table + q * 256;
            for (int b = 0; b < 256; b++) {
                hash[b] = hash[b] * 0x100000001B3ULL + (uint64_t)(int64_t)row[b];
                low = row[b] < low ? row[b] : low;
                high = row[b] > high ? row[b] : high;
            }
        }
        if (low < -1 || high >= n) {
            PyErr_SetString(PyExc_ValueError, "table: a transition out of range");
            goto done;
        }
        for (int b = 0; b < 256; b++) {
            int a = 0;
            while (a < b && hash[a] != hash[b]) a++;
            candidate[b] = a;
        }
        uint8_t differs[256] = {0};
        for (Py_ssize_t q = 0; q < n; q++) {
            const int32_t *row = table + q * 256;
            for (int b = 0; b < 256; b++) differs[b] |= row[b] != row[candidate[b]];
        }
        for (int b = 0; b < 256; b++)
            if (candidate[b] == b || differs[b]) symbol_byte[k++] = b;
    }
    if (k * (total + 1) >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "table: too many states to index their transitions in int32");
        goto done;
    }
    /* Predecessors by (symbol, target), in CSR form: the edges into q on symbol a are
     * preds[pred_start[a * (total + 1) + q] .. pred_start[a * (total + 1) + q + 1]). */
    int32_t *pred_start = PyMem_Calloc((size_t)(k * (total + 1) + 1), sizeof(int32_t));
    int32_t *preds = PyMem_Malloc((size_t)(total * k) * sizeof(int32_t));
    /* The partition: states listed block by block; a block is [first, end) of ``elems``. */
    int32_t *elems = PyMem_Malloc((size_t)total * sizeof(int32_t));
    int32_t *where = PyMem_Malloc((size_t)total * sizeof(int32_t));
    int32_t *block = PyMem_Malloc((size_t)total * sizeof(int32_t));
    int32_t *first = PyMem_Malloc((size_t)(total + 1) * sizeof(int32_t));
    int32_t *end = PyMem_Malloc((size_t)(total + 1) * sizeof(int32_t));
    int32_t *marked = PyMem_Calloc((size_t)(total + 1), sizeof(int32_t));
    int32_t *touched = PyMem_Malloc((size_t)(total + 1) * sizeof(int32_t));
    int32_t *work = PyMem_Malloc((size_t)(total + 1) * sizeof(int32_t));
    uint8_t *in_work = PyMem_Calloc((size_t)(total + 1), 1);
    int32_t *splitter = PyMem_Malloc((size_t)total * sizeof(int32_t));
    int32_t *class_of = PyMem_Malloc((size_t)(total + 1) * sizeof(int32_t));
    if (!pred_start || !preds || !elems || !where || !block || !first || !end || !marked || !touched || !work ||
        !in_work || !splitter || !class_of) {
        PyErr_NoMemory();
        goto freed;
    }
    for (Py_ssize_t p = 0; p < total; p++)
        for (Py_ssize_t a = 0; a < k; a++) {
            int32_t q = target_or_sink(table, n, p, symbol_byte[a]);
            pred_start[a * (total + 1) + q + 1]++;
        }
    for (Py_ssize_t i = 1; i <= k * (total + 1); i++) pred_start[i] += pred_start[i - 1];
    /* Each edge placed at its list's start, which moves on to the next list's start: shifted
     * back by one place afterwards, the starts are the lists' own again (no copy of them). */
    for (Py_ssize_t p = 0; p < total; p++)
        for (Py_ssize_t a = 0; a < k; a++) {
            int32_t q = target_or_sink(table, n, p, symbol_byte[a]);
            preds[pred_start[a * (total + 1) + q]++] = (int32_t)p;
        }
    memmove(pred_start + 1, pred_start, (size_t)(k * (total + 1)) * sizeof(int32_t));
    pred_start[0] = 0;
    /* Blocks: accepting states, the other live states, the sink. */
    int32_t blocks = 0, at = 0;
    for (int pass = 0; pass < 3; pass++) {
        int32_t start = at;
        for (Py_ssize_t q = 0; q < total; q++) {
            int kind = q == n ? 2 : accepting[q] ? 0 : 1;
            if (kind != pass) continue;
            elems[at] = (int32_t)q;
            where[q] = at++;
            block[q] = blocks;
        }
        if (at > start) {
            first[blocks] = start;
            end[blocks] = at;
            work[blocks] = blocks;
            in_work[blocks] = 1;
            blocks++;
        }
    }
    int32_t n_work = blocks;
    while (n_work) {
        int32_t b = work[--n_work];
        in_work[b] = 0;
        int32_t size = end[b] - first[b];
        memcpy(splitter, elems + first[b], (size_t)size * sizeof(int32_t));
        for (Py_ssize_t a = 0; a < k; a++) {
            int32_t n_touched = 0;
            const int32_t *starts = pred_start + a * (total + 1);
            for (int32_t i = 0; i < size; i++) {
                int32_t q = splitter[i];
                for (Py_ssize_t j = starts[q]; j < starts[q + 1]; j++) {
                    int32_t p = preds[j], c = block[p];
                    /* Move p to the marked front of its block. */
                    int32_t slot = first[c] + marked[c];
                    if (where[p] < slot) continue; /* marked already */
                    if (!marked[c]) touched[n_touched++] = c;
                    int32_t other = elems[slot];
                    elems[slot] = p;
                    elems[where[p]] = other;
                    where[other] = where[p];
                    where[p] = slot;
                    marked[c]++;
                }
            }
            for (int32_t t = 0; t < n_touched; t++) {
                int32_t c = touched[t], m = marked[c];
                marked[c] = 0;
                if (m == end[c] - first[c]) continue;
                /* The marked part becomes a new block. */
                int32_t nb = blocks++;
                first[nb] = first[c];
                end[nb] = first[c] + m;
                first[c] += m;
                for (int32_t i = first[nb]; i < end[nb]; i++) block[elems[i]] = nb;
                if (in_work[c] || m <= end[c] - first[c]) {
                    work[n_work++] = nb;
                    in_work[nb] = 1;
                } else {
                    work[n_work++] = c;
                    in_work[c] = 1;
                }
            }
        }
    }
    /* Classes numbered in the order of their first state. */
    for (int32_t c = 0; c < blocks; c++) class_of[c] = -1;
    {
        int32_t classes = 0;
        int32_t *out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int32_t));
        if (!out) {
            PyErr_NoMemory();
            goto freed;
        }
        for (Py_ssize_t q = 0; q < n; q++) {
            int32_t c = block[q];
            if (class_of[c] < 0) class_of[c] = classes++;
            out[q] = class_of[c];
        }
        result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)n * 4);
        PyMem_Free(out);
    }
freed:
    PyMem_Free(pred_start);
    PyMem_Free(preds);
    PyMem_Free(elems);
    PyMem_Free(where);
    PyMem_Free(block);
    PyMem_Free(first);
    PyMem_Free(end);
    PyMem_Free(marked);
    PyMem_Free(touched);
    PyMem_Free(work);
    PyMem_Free(in_work);
    PyMem_Free(splitter);
    PyMem_Free(class_of);
done:
    release_held((Py_buffer *[]){&tb, &ab}, 2);
    return result;
}

/* ---- an automaton state's missing transitions ------------------------------------------ */

PyDoc_STRVAR(column_groups_doc,
             "column_groups(rows, row, byts) -> (cols, groups, columns)\n\n"
             "The bytes of ``byts`` (uint8, repeats allowed) whose entry in ``row`` (int32, a state's 256\n"
             "transitions) is unknown, ascending, as ``cols``; ``rows`` (int32, k rows of 256: the DFA rows of\n"
             "the state's k sources) gives each such byte a column of k DFA states, and bytes with equal\n"
             "columns lead to the same state. ``groups``: per byte of ``cols`` its column's index in\n"
             "``columns``, the distinct columns as tuples of ints in order of first appearance. Costs k per\n"
             "byte per distinct column.");

static PyObject *column_groups(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *rows_obj, *row_obj, *byts_obj, *result = NULL, *columns = NULL;
    if (!PyArg_ParseTuple(args, "OOO", &rows_obj, &row_obj, &byts_obj)) return NULL;
    Py_buffer rb = {0}, kb = {0}, bb = {0};
    if (buffer_of(rows_obj, &rb, 0, 4, "rows") < 0 || buffer_of(row_obj, &kb, 0, 4, "row") < 0 ||
        buffer_of(byts_obj, &bb, 0, 1, "byts") < 0)
        goto done;
    if (rb.len % 1024 || kb.len != 1024) {
        PyErr_SetString(PyExc_ValueError, "rows: k rows of 256 int32; row: 256 int32");
        goto done;
    }
    const int32_t *rows = rb.buf, *row = kb.buf;
    const uint8_t *byts = bb.buf;
    Py_ssize_t k = rb.len / 1024;
    uint8_t wanted[256] = {0}, cols[256], groups[256], firsts[256];
    for (Py_ssize_t i = 0; i < bb.len; i++) wanted[byts[i]] = row[byts[i]] == UNKNOWN;
    int n_cols = 0, n_groups = 0;
    for (int byte = 0; byte < 256; byte++) {
        if (!wanted[byte]) continue;
        int g = 0;
        for (; g < n_groups; g++) {
            Py_ssize_t j = 0;
            while (j < k && rows[j * 256 + byte] == rows[j * 256 + firsts[g]]) j++;
            if (j == k) break;
        }
        if (g == n_groups) firsts[n_groups++] = (uint8_t)byte;
        cols[n_cols] = (uint8_t)byte;
        groups[n_cols++] = (uint8_t)g;
    }
    columns = PyList_New(n_groups);
    if (!columns) goto done;
    for (int g = 0; g < n_groups; g++) {
        PyObject *column = PyTuple_New(k);
        if (!column) goto done;
        PyList_SET_ITEM(columns, g, column);
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *d = PyLong_FromLong(rows[j * 256 + firsts[g]]);
            if (!d) goto done;
            PyTuple_SET_ITEM(column, j, d);
        }
    }
    result = Py_BuildValue("(y#y#O)", (const char *)cols, (Py_ssize_t)n_cols, (const char *)groups,
                           (Py_ssize_t)n_cols, columns);
done:
    Py_XDECREF(columns);
    release_held((Py_buffer *[]){&rb, &kb, &bb}, 3);
    return result;
}

/* ---- a fixed string from the root --------------------------------------------------------- */

PyDoc_STRVAR(literal_pass_doc,
             "literal_pass(trie, data, words) -> int\n\n"
             "Reads ``data`` down the trie from its root and sets in ``words`` (32-bit, writable) the bits of the\n"
             "tokens at each node on the way: the tokens that are prefixes of ``data``. Returns the node that\n"
             "spells all of ``data``, or -1 where the trie ends first or ``data`` is empty. Costs a binary\n"
             "search among a node's children per byte.");

static PyObject *literal_pass(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *trie_obj, *words_obj;
    Py_buffer data = {0}, wb = {0};
    if (!PyArg_ParseTuple(args, "Oy*O", &trie_obj, &data, &words_obj)) return NULL;
    Trie t = {0};
    Pass p = {0};
    PyObject *result = NULL;
    if (trie_open(&t, trie_obj) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (buffer_of(words_obj, &wb, PyBUF_WRITABLE, 4, "words") < 0) goto done;
    p.words = wb.buf;
    p.n_words = wb.len / 4;
    const uint8_t *bytes = data.buf;
    int64_t node = 0;
    Py_ssize_t read = 0;
    for (; read < data.len; read++) {
        int64_t lo = t.child_start[node], end = lo + t.child_count[node], hi = end;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (t.byte[mid] < bytes[read])
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == end || t.byte[lo] != bytes[read]) break;
        node = lo;
        if (pass_tokens(&p, &t, node) < 0) goto done;
    }
    result = PyLong_FromLongLong(read && read == data.len ? node : -1);
done:
    if (wb.obj) PyBuffer_Release(&wb);
    PyBuffer_Release(&data);
    trie_close(&t);
    return result;
}

/* ---- words of a mask set at a few places ------------------------------------------------- */

PyDoc_STRVAR(or_at_doc,
             "or_at(words, at, bits) -> None\n\n"
             "ORs ``bits[i]`` (int32) into ``words[at[i]]`` (int32, writable; ``at`` int64, in range) for each i: a\n"
             "cached walk's tokens set in a mask. numpy's ``words[at] |= bits`` costs a gather, an OR and a\n"
             "scatter, 2-3 us a call where the words are a few dozen; this costs the words.");

static PyObject *or_at(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *words_obj, *at_obj, *bits_obj;
    if (!PyArg_ParseTuple(args, "OOO", &words_obj, &at_obj, &bits_obj)) return NULL;
    Py_buffer wb = {0}, ab = {0}, bb = {0};
    PyObject *result = NULL;
    if (buffer_of(words_obj, &wb, PyBUF_WRITABLE, 4, "words") < 0 || buffer_of(at_obj, &ab, 0, 8, "at") < 0 ||
        buffer_of(bits_obj, &bb, 0, 4, "bits") < 0)
        goto done;
    Py_ssize_t n = ab.len / 8, n_words = wb.len / 4;
    if (bb.len / 4 != n) {
        PyErr_SetString(PyExc_ValueError, "at and bits differ in length");
        goto done;
    }
    int32_t *words = wb.buf;
    const int64_t *at = ab.buf;
    const int32_t *bits = bb.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (at[i] < 0 || at[i] >= n_words) {
            PyErr_SetString(PyExc_IndexError, "a word index out of range");
            goto done;
        }
    for (Py_ssize_t i = 0; i < n; i++) words[at[i]] |= bits[i];
    result = Py_NewRef(Py_None);
done:
    release_held((Py_buffer *[]){&wb, &ab, &bb}, 3);
    return result;
}

/* ---- two DFA states side by side -------------------------------------------------------- */

PyDoc_STRVAR(pair_pass_doc,
             "pair_pass(trie, table, accepting, base_table, base_accepting, start, base_start, in_words, budget)\n"
             "    -> (bytes, bytes) | None\n\n"
             "Reads the trie in two DFAs side by side (tables as for ``dfa_pass``) from ``start`` and\n"
             "``base_start``, below the root only where they may read differently: with ``in_words`` (one byte\n"
             "per state of the first, set where a word can still be completed), the first is the second minus a\n"
             "few words, and they read alike wherever none can be completed; with ``in_words`` None, they are one\n"
             "DFA (its table given twice) and read alike once they meet in one state. Returns, as native int64,\n"
             "the nodes one reads alive and the other not, and the nodes with bytes below where one accepts and\n"
             "the other not; None once more than ``budget`` nodes (0: any number) would be read on from. Costs\n"
             "the children of the nodes read on from.");

static PyObject *pair_pass(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *trie_obj, *table_obj, *words_obj, *accepting_obj, *base_table_obj, *base_accepting_obj;
    long long start, base_start;
    Py_ssize_t budget;
    if (!PyArg_ParseTuple(args, "OOOOOLLOn", &trie_obj, &table_obj, &accepting_obj, &base_table_obj,
                          &base_accepting_obj, &start, &base_start, &words_obj, &budget))
        return NULL;
    Trie t = {0};
    Py_buffer tb = {0}, wb = {0}, ab = {0}, btb = {0}, bab = {0};
    Dfa cut = {0}, base = {0};
    Pairs current = {0}, next = {0}, flips = {0}; /* flips: (node, 0 for stay, 1 for exit) */
    PyObject *result = NULL;
    if (trie_open(&t, trie_obj) < 0) return NULL;
    if (dfa_open(&cut, &tb, &ab, table_obj, accepting_obj, "table") < 0 ||
        dfa_open(&base, &btb, &bab, base_table_obj, base_accepting_obj, "base table") < 0 ||
        (words_obj != Py_None && buffer_of(words_obj, &wb, 0, 1, "in_words") < 0))
        goto done;
    const uint8_t *in_words = words_obj == Py_None ? NULL : wb.buf;
    if (in_words ? wb.len < cut.n_states : tb.buf != btb.buf) {
        PyErr_SetString(PyExc_ValueError, "in_words: one flag per state, or None for one table given twice");
        goto done;
    }
    if (start < 0 || start >= cut.dead || start % 256 || base_start < 0 || base_start > base.dead || base_start % 256) {
        PyErr_Format(PyExc_ValueError, "start %lld, base start %lld: not live states times 256", start, base_start);
        goto done;
    }
    Py_ssize_t read = 0;
    /* Each frontier entry: the node, and the two states packed in one word. */
    if (pairs_push(&current, 0, (int64_t)((uint64_t)start << 32 | (uint32_t)base_start)) < 0) goto done;
    while (current.n) {
        next.n = 0;
        for (Py_ssize_t i = 0; i < current.n; i++) {
            int64_t node = current.a[2 * i];
            uint64_t both = (uint64_t)current.a[2 * i + 1];
            const int32_t *row = cut.table + (int32_t)(both >> 32), *base_row = base.table + (int32_t)(uint32_t)both;
            for (int64_t child = t.child_start[node], last = child + t.child_count[node]; child < last; child++) {
                int32_t byte = t.byte[child], nxt = row[byte], base_nxt = base_row[byte];
                int alive = nxt != cut.dead, base_alive = base_nxt != base.dead;
                if (alive ? dfa_entry(&cut, nxt) < 0 : 0) goto done;
                /* Below, both read alike. */
                if (in_words ? (alive ? !in_words[nxt >> 8] : !base_alive) : nxt == base_nxt) continue;
                if (dfa_entry(&base, base_nxt) < 0) goto done;
                if (alive != base_alive && pairs_push(&flips, child, 0) < 0) goto done;
                int ends = alive && cut.accepting[nxt >> 8], base_ends = base_alive && base.accepting[base_nxt >> 8];
                if (ends != base_ends && t.child_count[child] && pairs_push(&flips, child, 1) < 0) goto done;
                if (pairs_push(&next, child, (int64_t)((uint64_t)(uint32_t)nxt << 32 | (uint32_t)base_nxt)) < 0)
                    goto done;
            }
        }
        read += next.n;
        if (budget && read > budget) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        Pairs swap = current;
        current = next;
        next = swap;
    }
    {
        Py_ssize_t n_stay = 0, n_exit = 0;
        for (Py_ssize_t i = 0; i < flips.n; i++) flips.a[2 * i + 1] ? n_exit++ : n_stay++;
        PyObject *stay = PyBytes_FromStringAndSize(NULL, n_stay * 8);
        PyObject *exits = PyBytes_FromStringAndSize(NULL, n_exit * 8);
        if (stay && exits) {
            int64_t *a = (int64_t *)PyBytes_AS_STRING(stay), *b = (int64_t *)PyBytes_AS_STRING(exits);
            for (Py_ssize_t i = 0; i < flips.n; i++) *(flips.a[2 * i + 1] ? b++ : a++) = flips.a[2 * i];
            result = PyTuple_Pack(2, stay, exits);
        }
        Py_XDECREF(stay);
        Py_XDECREF(exits);
    }
done:
    PyMem_Free(current.a);
    PyMem_Free(next.a);
    PyMem_Free(flips.a);
    release_held((Py_buffer *[]){&tb, &wb, &ab, &btb, &bab}, 5);
    trie_close(&t);
    return result;
}

PyDoc_STRVAR(root_pass_doc,
             "root_pass(state, level_start, node_of_id, words, fill_bytes) -> None\n\n"
             "Sets in ``words`` (32-bit, writable) the bits of the tokens ``state`` reads alive, stepping the\n"
             "automaton from the trie's root one level at a time (``level_start``: int64, where each level's\n"
             "nodes begin; ``node_of_id``: int64, each token's node, the trie's size for none). A node has one\n"
             "state whatever split of its bytes led there, so each is stepped once; a level's missing\n"
             "transitions are asked of ``fill_bytes(state, bytes)`` together. For real stacks: suspended\n"
             "sources are not looked for. Costs each level's nodes, and the live ones' children.");

static PyObject *Walker_root_pass(Walker *w, PyObject *args) {
    long long state;
    PyObject *levels_obj, *ids_obj, *words_obj, *fill_bytes;
    if (!PyArg_ParseTuple(args, "LOOOO", &state, &levels_obj, &ids_obj, &words_obj, &fill_bytes)) return NULL;
    if (w->busy) {
        PyErr_SetString(PyExc_RuntimeError, "a walker walks one walk at a time");
        return NULL;
    }
    Py_buffer words_b = {0}, levels_b = {0}, ids_b = {0};
    if (buffer_of(words_obj, &words_b, PyBUF_WRITABLE, 4, "words") < 0) return NULL;
    if (buffer_of(levels_obj, &levels_b, 0, 8, "level_start") < 0 ||
        buffer_of(ids_obj, &ids_b, 0, 8, "node_of_id") < 0) {
        release_held((Py_buffer *[]){&words_b, &levels_b, &ids_b}, 3);
        return NULL;
    }
    w->busy = 1;
    w->fill_bytes = fill_bytes;
    w->words = words_b.buf;
    int failed = 1;
    Pairs unknown = {0}; /* a level's (child, parent state) whose transitions were missing */
    const int64_t *level_start = levels_b.buf, *node_of_id = ids_b.buf;
    Py_ssize_t n_levels = levels_b.len / 8, n_nodes = w->trie.n_nodes, n_ids = ids_b.len / 8;
    int32_t *states = PyMem_Calloc((size_t)n_nodes + 1, sizeof(int32_t)); /* all DEAD */
    if (!states) {
        PyErr_NoMemory();
        goto done;
    }
    if (w->max_token >= words_b.len / 4 * 32 || n_ids > words_b.len / 4 * 32) {
        PyErr_SetString(PyExc_ValueError, "words is too short for the trie's token ids");
        goto done;
    }
    if (n_levels < 2 || level_start[0] != 0 || level_start[n_levels - 1] > n_nodes) {
        PyErr_SetString(PyExc_ValueError, "level_start: not the trie's levels");
        goto done;
    }
    if (read_automaton(w) < 0 || check_state(w, state) < 0) goto done;
    states[0] = (int32_t)state;
    Py_ssize_t alive = state != DEAD;
    for (Py_ssize_t depth = 0; depth + 1 < n_levels && alive; depth++) {
        alive = 0;
        unknown.n = 0;
        for (int64_t node = level_start[depth], last = level_start[depth + 1]; node < last; node++) {
            if (states[node] == DEAD) continue;
            const int32_t *row = w->trans + (int64_t)states[node] * 256;
            for (int64_t c = w->trie.child_start[node], end = c + w->trie.child_count[node]; c < end; c++) {
                int32_t nxt = row[w->trie.byte[c]];
                if (nxt == UNKNOWN) {
                    if (pairs_push(&unknown, c, states[node]) < 0) goto done;
                } else if (nxt != DEAD) {
                    states[c] = nxt;
                    alive++;
                }
            }
        }
        if (!unknown.n) continue;
        Set lacking;
        Pairs bits = {0};
        if (set_init(&lacking, 64) < 0) goto done;
        for (Py_ssize_t i = 0; i < unknown.n; i++)
            if (lack(&lacking, &bits, unknown.a[2 * i + 1], w->trie.byte[unknown.a[2 * i]]) < 0) {
                set_free(&lacking);
                PyMem_Free(bits.a);
                goto done;
            }
        if (ask(w, &lacking, &bits) < 0) goto done;
        for (Py_ssize_t i = 0; i < unknown.n; i++) {
            int64_t c = unknown.a[2 * i];
            int32_t nxt = w->trans[unknown.a[2 * i + 1] * 256 + w->trie.byte[c]];
            if (nxt == UNKNOWN) {
                PyErr_SetString(PyExc_RuntimeError, "fill_bytes left a transition unknown");
                goto done;
            }
            if (nxt != DEAD) {
                states[c] = nxt;
                alive++;
            }
        }
    }
    /* Token by token at the end: a node's own tokens are read from three more arrays. */
    for (Py_ssize_t id = 0; id < n_ids; id++) {
        int64_t node = node_of_id[id];
        if (node < 0 || node > n_nodes) {
            PyErr_SetString(PyExc_ValueError, "node_of_id: a node outside the trie");
            goto done;
        }
        if (states[node] != DEAD) w->words[id >> 5] |= (uint32_t)1 << (id & 31);
    }
    failed = 0;
done:
    PyMem_Free(unknown.a);
    PyMem_Free(states);
    w->busy = 0;
    w->fill_bytes = NULL;
    w->words = NULL;
    release_held((Py_buffer *[]){&words_b, &levels_b, &ids_b}, 3);
    return failed ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef Walker_methods[] = {
    {"walk", (PyCFunction)Walker_walk, METH_VARARGS, walk_doc},
    {"root_pass", (PyCFunction)Walker_root_pass, METH_VARARGS, root_pass_doc},
    {"held_bytes", (PyCFunction)Walker_held_bytes, METH_NOARGS, "Bytes the walker keeps between walks (its ways)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "onrails.constrain._walk.Walker",
    .tp_basicsize = sizeof(Walker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Walker(trie, automaton, over_budget): mask walks over one automaton, keeping the ways\n"
                        "of its split states between walks. ``trie``: (child_start, child_count, byte32,\n"
                        "node_token_start, node_token_count, token_ids_by_node); ``over_budget(budget)``: the\n"
                        "exception a walk past its budget raises."),
    .tp_new = Walker_new,
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_methods = Walker_methods,
};

static PyMethodDef module_functions[] = {
    {"dfa_pass", dfa_pass, METH_VARARGS, dfa_pass_doc},
    {"pair_pass", pair_pass, METH_VARARGS, pair_pass_doc},
    {"below_pass", below_pass, METH_VARARGS, below_pass_doc},
    {"literal_pass", literal_pass, METH_VARARGS, literal_pass_doc},
    {"or_at", or_at, METH_VARARGS, or_at_doc},
    {"column_groups", column_groups, METH_VARARGS, column_groups_doc},
    {"equivalent_states", equivalent_states, METH_VARARGS, equivalent_states_doc},
    {"determinise", determinise, METH_VARARGS, determinise_doc},
    {"live_states", live_states, METH_VARARGS, live_states_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_walk",
    .m_doc = "Mask walks and passes over the vocabulary trie in compiled code (Walker, dfa_pass, pair_pass,\n"
             "below_pass, literal_pass, or_at), and helpers of the automata (column_groups, determinise, live_states,\n"
             "equivalent_states).",
    .m_size = -1,
    .m_methods = module_functions,
};

PyMODINIT_FUNC PyInit__walk(void) {
    if (PyType_Ready(&WalkerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&WalkerType);
    if (PyModule_AddObject(m, "Walker", (PyObject *)&WalkerType) < 0) {
        Py_DECREF(&WalkerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
