/*
 * mbcheck.c: the pieces of the Cell Q client check that are not rules: PASS/FAIL
 * reporting, libmodbus calls that return the exception code, raw Modbus TCP frames on a
 * plain socket (for requests libmodbus refuses to send), and slot/job helpers. Written
 * from the ICD 1.1 text alone; see cellq_check.c.
 */
#define _POSIX_C_SOURCE 200809L

#include "mbcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const char *host;
int port;
modbus_t *mb;
int passed, failed, skipped;
uint32_t seq_base;
static uint32_t seq_next;
char samples[16][17];
char last_answer[64];
uint16_t initial_scale[2];
int nsamples, next_sample;

/* ------------------------------------------------------------------ reporting */
void rule(int ok, const char *section, const char *name, const char *fmt, ...)
{
    char detail[512] = "";
    if (!ok && fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
    }
    printf("%s  %-14s %s%s%s\n", ok ? "PASS" : "FAIL", section, name, *detail ? ": " : "",
           detail);
    fflush(stdout);
    if (ok)
        passed++;
    else
        failed++;
}

void note(const char *section, const char *fmt, ...)
{
    va_list ap;
    printf("NOTE  %-14s ", section);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

void skip(const char *section, const char *name, const char *why)
{
    printf("SKIP  %-14s %s: %s\n", section, name, why);
    fflush(stdout);
    skipped++;
}

/* ------------------------------------------------------------------ libmodbus */
/* 0 on success, the exception code (1..11) on an exception answer, IO_ERROR else. */
int mb_result(int rc)
{
    if (rc >= 0)
        return 0;
    if (errno > MODBUS_ENOBASE && errno < MODBUS_ENOBASE + 12)
        return errno - MODBUS_ENOBASE;
    return IO_ERROR;
}

void mb_reconnect(void)
{
    if (mb) {
        modbus_close(mb);
        modbus_free(mb);
    }
    mb = modbus_new_tcp(host, port);
    modbus_set_slave(mb, 1);
    modbus_set_response_timeout(mb, 5, 0);
    if (modbus_connect(mb) < 0) {
        fprintf(stderr, "cellq_check: cannot connect to %s:%d: %s\n", host, port,
                modbus_strerror(errno));
        exit(2);
    }
}

int rd_ir(int a, int n, uint16_t *v)
{
    return mb_result(modbus_read_input_registers(mb, a, n, v));
}

int rd_hr(int a, int n, uint16_t *v) { return mb_result(modbus_read_registers(mb, a, n, v)); }

int wr(int a, int n, const uint16_t *v) { return mb_result(modbus_write_registers(mb, a, n, v)); }

int wr1(int a, uint16_t v) { return mb_result(modbus_write_register(mb, a, v)); }

uint32_t u32(const uint16_t *r) { return ((uint32_t)r[0] << 16) | r[1]; }

float f32(const uint16_t *r)
{
    uint32_t u = u32(r);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void put_f32(uint16_t *r, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    r[0] = (uint16_t)(u >> 16);
    r[1] = (uint16_t)u;
}

void put_str(uint16_t *r, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < 8; i++) {
        unsigned hi = 2 * i < n ? (unsigned char)s[2 * i] : 0;
        unsigned lo = 2 * i + 1 < n ? (unsigned char)s[2 * i + 1] : 0;
        r[i] = (uint16_t)((hi << 8) | lo);
    }
}

double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void nap(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ raw frames */
int raw_open(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("cellq_check: raw connect");
        exit(2);
    }
    return fd;
}

int raw_send(int fd, const uint8_t *buf, size_t n)
{
    return send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* An MBAP frame around ``pdu``: transaction ``tid``, protocol 0, ``unit``. */
size_t frame(uint8_t *out, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t n)
{
    out[0] = (uint8_t)(tid >> 8);
    out[1] = (uint8_t)tid;
    out[2] = out[3] = 0;
    out[4] = (uint8_t)((n + 1) >> 8);
    out[5] = (uint8_t)(n + 1);
    out[6] = unit;
    memcpy(out + 7, pdu, n);
    return n + 7;
}

/* Reads one answer frame within ``timeout`` s: its length, NO_ANSWER, or CLOSED. */
int raw_answer(int fd, uint8_t *rsp, double timeout)
{
    size_t got = 0, want = 7;
    double until = wall() + timeout;
    while (got < want) {
        int left = (int)((until - wall()) * 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) != 1)
            return NO_ANSWER;
        ssize_t r = recv(fd, rsp + got, want - got, 0);
        if (r <= 0)
            return CLOSED;
        got += (size_t)r;
        if (got == 7)
            want = 6 + (size_t)((rsp[4] << 8) | rsp[5]);
        if (want > 300)
            return CLOSED;
    }
    return (int)got;
}

/* One raw request on a fresh connection: the exception code, 0 for a normal answer,
   NO_ANSWER, CLOSED, or IO_ERROR for an answer that is neither (``last_answer`` holds
   the answer's PDU in hex for the report). */
int raw_request(const uint8_t *pdu, size_t n, uint8_t unit, double timeout)
{
    uint8_t req[600], rsp[300];
    int fd = raw_open();
    size_t len = frame(req, 0x4242, unit, pdu, n);
    int rc = raw_send(fd, req, len) < 0 ? CLOSED : raw_answer(fd, rsp, timeout);
    close(fd);
    snprintf(last_answer, sizeof last_answer, "%s",
             rc == NO_ANSWER ? "no answer" : rc == CLOSED ? "connection closed" : "");
    if (rc < 0)
        return rc;
    for (int i = 7; i < rc && i < 20; i++)
        snprintf(last_answer + strlen(last_answer), sizeof last_answer - strlen(last_answer),
                 "%02x", rsp[i]);
    if (rc >= 9 && rsp[7] == (pdu[0] | 0x80))
        return rsp[8];
    return rsp[7] == pdu[0] ? 0 : IO_ERROR;
}

/* ------------------------------------------------------------------ slots and jobs */
uint32_t new_seq(void) { return seq_base + seq_next++; }

int slot_ir(int s, uint16_t *r) { return rd_ir(BASE + SPAN * s, SPAN, r); }

int slot_state(int s)
{
    uint16_t r[SPAN];
    return slot_ir(s, r) == 0 ? r[2] : -1;
}

int free_slot(void)
{
    for (int s = 0; s < SLOTS; s++)
        if (slot_state(s) == FREE)
            return s;
    return -1;
}

int command(int s, uint32_t seq, uint16_t panel, const char *sample, uint16_t cmd)
{
    uint16_t v[12];
    v[0] = (uint16_t)(seq >> 16);
    v[1] = (uint16_t)seq;
    v[2] = panel;
    put_str(&v[3], sample);
    v[11] = cmd;
    return wr(BASE + SPAN * s, 12, v);
}

int seq_command(int s, uint32_t seq, uint16_t cmd)
{
    uint16_t v[2] = {(uint16_t)(seq >> 16), (uint16_t)seq};
    int rc = wr(BASE + SPAN * s, 2, v);
    return rc ? rc : wr1(BASE + SPAN * s + 11, cmd);
}

uint32_t jobs_created(void)
{
    uint16_t r[2] = {0, 0};
    rd_ir(IR_JOBS, 2, r);
    return u32(r);
}

int analyzer_state(void)
{
    uint16_t r[1];
    return rd_ir(0, 1, r) == 0 ? r[0] : -1;
}

/* Waits until slot ``s`` leaves the states in ``mask`` (bits of slot states). */
int wait_slot(int s, unsigned mask)
{
    double until = wall() + HANG_GUARD;
    int st;
    while (((st = slot_state(s)) >= 0) && (mask & (1u << st)) && wall() < until)
        nap(0.01);
    return st;
}

void cleanup(int s, uint32_t seq)
{
    uint16_t r[SPAN];
    if (slot_ir(s, r) != 0 || u32(r) != seq)
        return;
    if (r[2] == QUEUED || r[2] == RUNNING)
        seq_command(s, seq, ABORT);
    seq_command(s, seq, RELEASE);
}

int all_zero(const uint16_t *r, int n)
{
    for (int i = 0; i < n; i++)
        if (r[i])
            return 0;
    return 1;
}

const char *take_sample(void)
{
    if (next_sample >= nsamples)
        return NULL;
    return samples[next_sample++];
}

int samples_left(void) { return nsamples - next_sample; }

void set_fault(uint16_t code, int raise)
{
    uint16_t v[2] = {code, (uint16_t)raise};
    if (raise)
        wr(HR_FAULT, 2, v);
    else
        wr1(HR_RAISE, 0);
}

