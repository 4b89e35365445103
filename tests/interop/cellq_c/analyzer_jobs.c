/*
 * analyzer_jobs.c: the state of the C Cell Q analyzer (cellq_analyzer.c): its process
 * clock, sixteen slots, the jobs and their scheduler, the commands and the analyzer
 * fault, and the samples it knows. Written from ICD 1.1 section 2 alone; no Modbus here.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzer.h"

/* process seconds of each assay, in bit order (ICD section 2) */
static const double ASSAY_SECONDS[ASSAYS] = {
    15 * 60,     /* 0 cell_count */
    15 * 60,     /* 1 viability */
    45 * 60,     /* 2 identity */
    60 * 60,     /* 3 transduction */
    60 * 60,     /* 4 endotoxin */
    7 * 86400,   /* 5 sterility */
    4 * 3600,    /* 6 mycoplasma */
};

slot_t slots[SLOTS];
static uint64_t submit_counter;
uint32_t jobs_created;
int faulted;
uint16_t fault_code;       /* input register 1 */
uint16_t fault_code_param; /* holding register 900 */
uint16_t drawn_reg[8];     /* holding registers 904..911 as last written */
static char (*drawn)[17];
static size_t drawn_count;

double scale = 1.0, mono_start;
static double proc_base, mono_base;

double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double proc_now(void) { return proc_base + (mono() - mono_base) * scale; }

void set_scale(double s)
{
    proc_base = proc_now();
    mono_base = mono();
    scale = s;
}

/* ------------------------------------------------------------------ encodings */
uint32_t u32_of(const uint16_t *r) { return ((uint32_t)r[0] << 16) | r[1]; }

void put_u32(uint16_t *r, uint32_t v)
{
    r[0] = (uint16_t)(v >> 16);
    r[1] = (uint16_t)(v & 0xffff);
}

float f32_of(const uint16_t *r)
{
    uint32_t u = u32_of(r);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void put_f32(uint16_t *r, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(r, u);
}

static int id_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

/* A SampleId from 8 registers: 1..16 id characters, NUL padded. 0 when malformed. */
int sample_of(const uint16_t *r, char out[17])
{
    int n = 0, ended = 0;
    for (int i = 0; i < 16; i++) {
        int c = (i % 2 == 0) ? (r[i / 2] >> 8) : (r[i / 2] & 0xff);
        if (c == 0) {
            ended = 1;
        } else if (ended || !id_char(c)) {
            return 0;
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n > 0;
}

static void put_sample(uint16_t *r, const char *s)
{
    size_t n = strlen(s);
    for (int i = 0; i < 8; i++) {
        int hi = (size_t)(2 * i) < n ? (unsigned char)s[2 * i] : 0;
        int lo = (size_t)(2 * i + 1) < n ? (unsigned char)s[2 * i + 1] : 0;
        r[i] = (uint16_t)((hi << 8) | lo);
    }
}

/* ------------------------------------------------------------------ samples */
static int known(const char *sample)
{
    for (size_t i = 0; i < drawn_count; i++)
        if (strcmp(drawn[i], sample) == 0)
            return 1;
    return 0;
}

int mark_drawn(const char *sample)
{
    if (known(sample))
        return EX_OK;
    if (drawn_count == MAX_DRAWN)
        return EX_FAILURE;
    strcpy(drawn[drawn_count++], sample);
    return EX_OK;
}

/* Deterministic plausible results from the SampleId (FNV-1a, then one mix per assay). */
static double unit_of(const char *sample, int assay)
{
    uint32_t h = 2166136261u;
    for (const char *p = sample; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h ^= (uint32_t)(assay + 1) * 0x9e3779b9u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    return (double)(h & 0xffffff) / 16777216.0;
}

static void compute_results(slot_t *s)
{
    static const double lo[ASSAYS] = {2e5, 75, 60, 15, 0.01, 0, 0};
    static const double span[ASSAYS] = {3e6, 23, 38, 50, 0.4, 0, 0};
    for (int a = 0; a < ASSAYS; a++)
        s->results[a] = (s->panel & (1u << a))
                            ? (float)(lo[a] + span[a] * unit_of(s->sample, a))
                            : NAN;
}

/* ------------------------------------------------------------------ scheduler */
static int running_count(void)
{
    int n = 0;
    for (int i = 0; i < SLOTS; i++)
        n += slots[i].state == RUNNING;
    return n;
}

static void start_queued(double t)
{
    while (!faulted && running_count() < MAX_RUNNING) {
        slot_t *next = NULL;
        for (int i = 0; i < SLOTS; i++)
            if (slots[i].state == QUEUED && (next == NULL || slots[i].order < next->order))
                next = &slots[i];
        if (next == NULL)
            return;
        if (!known(next->sample)) { /* no tube: job fault 1 when it starts */
            next->state = FAILED;
            next->fault = JF_UNKNOWN_SAMPLE;
            continue;
        }
        next->state = RUNNING;
        next->started = t;
    }
}

int progress_at(const slot_t *s, double now)
{
    if (s->state != RUNNING)
        return s->progress;
    double p = (now - s->started) / s->duration * 1000.0;
    return p < 0 ? 0 : p > 999 ? 999 : (int)p;
}

/* Runs the analyzer's jobs up to process time ``now``, one completion at a time. */
void advance(double now)
{
    for (;;) {
        slot_t *first = NULL;
        for (int i = 0; i < SLOTS; i++) {
            slot_t *s = &slots[i];
            if (s->state == RUNNING && s->started + s->duration <= now &&
                (first == NULL || s->started + s->duration < first->started + first->duration))
                first = s;
        }
        if (first == NULL)
            break;
        first->state = DONE;
        first->progress = 1000;
        compute_results(first);
        start_queued(first->started + first->duration);
    }
    start_queued(now);
}

int busy(void)
{
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].state == QUEUED || slots[i].state == RUNNING)
            return 1;
    return 0;
}

void raise_fault(uint16_t code, double now)
{
    faulted = 1;
    fault_code = code;
    for (int i = 0; i < SLOTS; i++) {
        slot_t *s = &slots[i];
        if (s->state == RUNNING) { /* running jobs fail, queued ones wait */
            s->progress = progress_at(s, now);
            s->state = FAILED;
            s->fault = JF_ASSAY_FAILURE;
        }
    }
}

void clear_fault(double now)
{
    faulted = 0;
    fault_code = 0;
    start_queued(now);
}

/* ------------------------------------------------------------------ commands */
int submit(int idx, double now)
{
    slot_t *s = &slots[idx];
    uint32_t seq = u32_of(&s->hr[0]);
    uint16_t panel = s->hr[2];
    char sample[17];
    if (s->state != FREE && s->job_seq == seq) { /* idempotent, checked first */
        put_u32(&s->hr[0], s->job_seq);
        s->hr[2] = s->panel;
        put_sample(&s->hr[3], s->sample);
        return EX_OK;
    }
    if (seq == 0 || !sample_of(&s->hr[3], sample) || panel == 0 || (panel & ~0x7fu))
        return EX_VALUE;
    for (int i = 0; i < SLOTS; i++)
        if (i != idx && slots[i].state != FREE && slots[i].job_seq == seq)
            return EX_VALUE; /* 1.1: a JobSeq another slot holds */
    if (faulted)
        return EX_FAILURE;
    if (s->state != FREE)
        return EX_BUSY;
    s->state = QUEUED;
    s->job_seq = seq;
    s->panel = panel;
    strcpy(s->sample, sample);
    s->order = ++submit_counter;
    s->duration = 0;
    for (int a = 0; a < ASSAYS; a++)
        if (panel & (1u << a))
            s->duration += ASSAY_SECONDS[a];
    s->progress = 0;
    s->fault = JF_NONE;
    for (int a = 0; a < ASSAYS; a++)
        s->results[a] = NAN;
    jobs_created++;
    start_queued(now);
    return EX_OK;
}

int abort_job(int idx, double now)
{
    slot_t *s = &slots[idx];
    if (u32_of(&s->hr[0]) != s->job_seq)
        return EX_VALUE;
    if (s->state != QUEUED && s->state != RUNNING)
        return EX_BUSY;
    s->progress = progress_at(s, now);
    s->state = ABORTED;
    start_queued(now);
    return EX_OK;
}

int release_job(int idx)
{
    slot_t *s = &slots[idx];
    if (u32_of(&s->hr[0]) != s->job_seq)
        return EX_VALUE;
    if (s->state != DONE && s->state != FAILED && s->state != ABORTED)
        return EX_BUSY;
    memset(s, 0, sizeof *s);
    return EX_OK;
}

int init_analyzer(double initial_scale)
{
    drawn = calloc(MAX_DRAWN, sizeof *drawn);
    mono_start = mono_base = mono();
    scale = initial_scale;
    return drawn != NULL;
}
