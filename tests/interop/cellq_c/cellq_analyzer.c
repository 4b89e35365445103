/*
 * cellq_analyzer.c: a Cell Q QC analyzer on another Modbus stack (libmodbus, C),
 * written from the ICD 1.1 text alone (section 2, and the Cell Q twin controls of
 * section 4). It owns nothing of cellfab: it exists so the conformance suite and the
 * driver can be run against an analyzer that shares no code with ours.
 *
 * Modbus TCP only (RTU is not implemented). libmodbus frames the requests
 * (modbus_receive) and sends the answers (modbus_reply, modbus_reply_exception); the
 * analyzer checks the MBAP header itself (libmodbus does not) and decides every answer
 * before libmodbus sees it, so libmodbus never answers an exception of its own.
 *
 * Slot life cycle (ICD section 2):
 *
 *   FREE --submit--> QUEUED --(<4 running, not faulted)--> RUNNING --assays--> DONE
 *                     |  \__ never-drawn sample at start: FAILED (job fault 1)  |
 *                     |                           analyzer fault: FAILED (3) --+
 *                     +--abort--> ABORTED <--abort-- RUNNING
 *   DONE | FAILED | ABORTED --release--> FREE (every register of the slot reads 0)
 *
 * Twin controls (ICD section 4): HR 900 fault code, HR 901 raise (1) / clear (0),
 * HR 902..903 time scale (float32, 0.001..1e7), IR 900..901 jobs created (uint32).
 * Proposed extension (not in ICD 1.1): HR 904..911, a SampleId string written whole,
 * marks that sample as drawn, the stand-in for a tube handed over by a shuttle.
 *
 * Results are deterministic and derived from the SampleId (no world model).
 *
 * This file: the register map, the requests and the framing, and main; the analyzer's
 * state, jobs and commands are in analyzer_jobs.c.
 *
 * Usage: cellq_analyzer [--host H] [--port P] [--time-scale S]
 *   port 0 (the default) takes an ephemeral port; "H:P" is printed once listening.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#include "analyzer.h"

/* ------------------------------------------------------------------ the map */
/* Holding register ``a``: -1 outside the map, 0 in the map but unnamed (reads 0,
   refuses writes), 1 named; for a named one, the field (start, length) holding it. */
static int hr_kind(int a, int *start, int *len)
{
    if (a >= SLOT_BASE && a < SLOT_BASE + SLOTS * SLOT_SPAN) {
        int b = a - (a - SLOT_BASE) % SLOT_SPAN, off = a - b;
        if (off <= 1) { *start = b; *len = 2; }
        else if (off == 2) { *start = b + 2; *len = 1; }
        else if (off <= 10) { *start = b + 3; *len = 8; }
        else if (off == 11) { *start = b + 11; *len = 1; }
        else return 0;
        return 1;
    }
    if (a == HR_FAULT_CODE || a == HR_FAULT_RAISE) { *start = a; *len = 1; return 1; }
    if (a >= HR_TIME_SCALE && a < HR_DRAWN) { *start = HR_TIME_SCALE; *len = 2; return 1; }
    if (a >= HR_DRAWN && a < HR_TWIN_END) { *start = HR_DRAWN; *len = 8; return 1; }
    return -1;
}

static int ir_in_map(int a)
{
    return (a >= 0 && a < IR_STATUS_END) ||
           (a >= SLOT_BASE && a < SLOT_BASE + SLOTS * SLOT_SPAN) ||
           (a >= IR_JOBS && a < IR_TWIN_END);
}

static uint16_t hr_value(int a)
{
    if (a >= SLOT_BASE && a < SLOT_BASE + SLOTS * SLOT_SPAN)
        return slots[(a - SLOT_BASE) / SLOT_SPAN].hr[(a - SLOT_BASE) % SLOT_SPAN];
    if (a == HR_FAULT_CODE)
        return fault_code_param;
    if (a == HR_FAULT_RAISE)
        return (uint16_t)faulted;
    if (a >= HR_TIME_SCALE && a < HR_DRAWN) {
        uint16_t r[2];
        put_f32(r, (float)scale);
        return r[a - HR_TIME_SCALE];
    }
    if (a >= HR_DRAWN && a < HR_TWIN_END)
        return drawn_reg[a - HR_DRAWN];
    return 0;
}

static uint16_t ir_value(int a, double now)
{
    uint16_t r[SLOT_SPAN];
    if (a < IR_STATUS_END) {
        int free_slots = 0;
        for (int i = 0; i < SLOTS; i++)
            free_slots += slots[i].state == FREE;
        uint32_t heartbeat = (uint32_t)(mono() - mono_start);
        switch (a) {
        case 0: return (uint16_t)(faulted ? 2 : busy() ? 1 : 0);
        case 1: return fault_code;
        case 2: return (uint16_t)free_slots;
        case 3: return (uint16_t)(heartbeat >> 16);
        case 4: return (uint16_t)(heartbeat & 0xffff);
        case 5: return 1;
        default: return 0;
        }
    }
    if (a >= IR_JOBS) {
        put_u32(r, jobs_created);
        return r[a - IR_JOBS];
    }
    const slot_t *s = &slots[(a - SLOT_BASE) / SLOT_SPAN];
    int off = (a - SLOT_BASE) % SLOT_SPAN;
    if (s->state == FREE)
        return 0;
    memset(r, 0, sizeof r);
    put_u32(&r[0], s->job_seq);
    r[2] = (uint16_t)s->state;
    r[3] = (uint16_t)progress_at(s, now);
    r[4] = (uint16_t)s->fault;
    for (int k = 0; k < ASSAYS; k++)
        put_f32(&r[8 + 2 * k], s->state == DONE ? s->results[k] : NAN);
    return r[off];
}

/* ------------------------------------------------------------------ requests */
static int read_request(int fc, int addr, int count, modbus_mapping_t *map, double now)
{
    if (count < 1 || count > 125)
        return EX_VALUE;
    if (addr + count > MAP_SIZE)
        return EX_ADDRESS;
    for (int a = addr; a < addr + count; a++) {
        int start, len;
        if (fc == 3 ? hr_kind(a, &start, &len) < 0 : !ir_in_map(a))
            return EX_ADDRESS;
    }
    for (int a = addr; a < addr + count; a++) {
        if (fc == 3)
            map->tab_registers[a] = hr_value(a);
        else
            map->tab_input_registers[a] = ir_value(a, now);
    }
    return EX_OK;
}

static int write_twin(int addr, int count, const uint16_t *v, double now)
{
    int end = addr + count;
    uint16_t code = fault_code_param;
    int raise = -1;
    double new_scale = -1;
    char sample[17];
    for (int a = addr; a < end; a++) {
        if (a == HR_FAULT_CODE) {
            code = v[a - addr];
        } else if (a == HR_FAULT_RAISE) {
            raise = v[a - addr];
            if (raise > 1)
                return EX_VALUE;
        } else if (a == HR_TIME_SCALE) {
            float f = f32_of(&v[a - addr]);
            if (!(f >= 0.001f && f <= 1e7f))
                return EX_VALUE;
            new_scale = f;
        } else if (a == HR_DRAWN && !sample_of(&v[a - addr], sample)) {
            return EX_VALUE;
        }
    }
    if (raise == 1 && code == 0)
        return EX_VALUE; /* a fault needs a code: 0 means none */
    if (addr <= HR_DRAWN && end >= HR_TWIN_END) {
        int rc = mark_drawn(sample);
        if (rc != EX_OK)
            return rc;
        memcpy(drawn_reg, &v[HR_DRAWN - addr], sizeof drawn_reg);
    }
    if (addr <= HR_FAULT_CODE)
        fault_code_param = code;
    if (raise == 1)
        raise_fault(code, now);
    else if (raise == 0 && faulted)
        clear_fault(now);
    if (new_scale > 0)
        set_scale(new_scale);
    return EX_OK;
}

static int write_request(int addr, int count, const uint16_t *v, double now)
{
    int end = addr + count;
    if (end > MAP_SIZE)
        return EX_ADDRESS;
    for (int a = addr; a < end; a++) {
        int start, len;
        if (hr_kind(a, &start, &len) <= 0)
            return EX_ADDRESS;
    }
    for (int a = addr; a < end; a++) { /* 1.1: 32-bit values and strings written whole */
        int start, len;
        hr_kind(a, &start, &len);
        if (start < addr || start + len > end)
            return EX_VALUE;
    }
    if (addr >= HR_FAULT_CODE)
        return write_twin(addr, count, v, now);
    int idx = (addr - SLOT_BASE) / SLOT_SPAN, b = SLOT_BASE + idx * SLOT_SPAN;
    slot_t *s = &slots[idx];
    int cmd = end > b + 11 ? v[b + 11 - addr] : CMD_NONE;
    if (cmd > CMD_RELEASE)
        return EX_VALUE;
    uint16_t saved[SLOT_SPAN];
    memcpy(saved, s->hr, sizeof saved);
    memcpy(&s->hr[addr - b], v, (size_t)count * sizeof *v);
    s->hr[11] = 0; /* reads 0 again after every command, refused ones included */
    int rc = cmd == CMD_SUBMIT  ? submit(idx, now)
             : cmd == CMD_ABORT ? abort_job(idx, now)
             : cmd == CMD_RELEASE ? release_job(idx)
                                  : EX_OK;
    if (rc != EX_OK) /* a refused request changes no register */
        memcpy(s->hr, saved, sizeof saved);
    return rc;
}

/* Reads exactly n more bytes of the current frame (byte timeout 0.5 s). */
static int read_more(int fd, uint8_t *buf, int n)
{
    while (n > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 500) != 1)
            return -1;
        ssize_t got = recv(fd, buf, (size_t)n, 0);
        if (got <= 0)
            return -1;
        buf += got;
        n -= (int)got;
    }
    return 0;
}

/* Decides the answer to one well-framed request from unit 1: EX_OK or an exception. */
static int decide(const uint8_t *req, int fc, int oversized, modbus_mapping_t *map)
{
    if (fc != 3 && fc != 4 && fc != 6 && fc != 16)
        return EX_FUNCTION;
    int addr = (req[HEADER + 1] << 8) | req[HEADER + 2];
    int count = (req[HEADER + 3] << 8) | req[HEADER + 4];
    double now = proc_now();
    advance(now);
    if (fc == 3 || fc == 4)
        return read_request(fc, addr, count, map, now);
    if (fc == 6) {
        uint16_t v = (uint16_t)count;
        return write_request(addr, 1, &v, now);
    }
    if (count < 1 || count > 123 || req[HEADER + 5] != 2 * count || oversized)
        return EX_VALUE;
    uint16_t v[123];
    for (int i = 0; i < count; i++)
        v[i] = (uint16_t)((req[HEADER + 6 + 2 * i] << 8) | req[HEADER + 7 + 2 * i]);
    return write_request(addr, count, v, now);
}

/* One request from ``fd``: answers it (unit 1), stays silent (another unit), or
   returns CLOSE for a frame that cannot be parsed. */
static int serve_one(modbus_t *ctx, int fd, modbus_mapping_t *map)
{
    uint8_t req[512];
    memset(req, 0, HEADER + 10);
    modbus_set_socket(ctx, fd);
    int rc = modbus_receive(ctx, req);
    int oversized = 0;
    if (rc < 0) {
        /* libmodbus refuses a frame longer than its 260-byte ADU (a write of more than
           123 registers): read the rest ourselves, the MBAP length says how much. */
        if (errno != EMBBADDATA || (req[HEADER] != 16 && req[HEADER] != 15 && req[HEADER] != 23))
            return CLOSE;
        rc = req[HEADER] == 23 ? HEADER + 10 : HEADER + 6;
        oversized = 1;
    }
    if (rc < HEADER + 1)
        return CLOSE;
    int protocol = (req[2] << 8) | req[3], length = (req[4] << 8) | req[5];
    int unit = req[6], fc = req[HEADER];
    if (protocol != 0 || length < 2 || length > 300 || 6 + length < rc)
        return CLOSE;
    if (6 + length > rc) {
        /* libmodbus stops after the function code of a function it does not parse */
        int complete = (fc >= 1 && fc <= 6) || fc == 15 || fc == 16 || fc == 22 || fc == 23;
        if (complete && !oversized)
            return CLOSE;
        if (read_more(fd, req + rc, 6 + length - rc) < 0)
            return CLOSE;
        rc = 6 + length;
    }
    if (unit != 1)
        return EX_OK; /* requests for another unit id get no answer */
    int code = decide(req, fc, oversized, map);
    int sent = code == EX_OK ? modbus_reply(ctx, req, rc, map)
                             : modbus_reply_exception(ctx, req, (unsigned)code);
    return sent < 0 ? CLOSE : EX_OK;
}

static void usage(void)
{
    fprintf(stderr, "usage: cellq_analyzer [--host H] [--port P] [--time-scale S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    double initial_scale = 1.0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--host") == 0)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--time-scale") == 0)
            initial_scale = atof(argv[++i]);
        else
            usage();
    }
    if (!(initial_scale >= 0.001 && initial_scale <= 1e7) || port < 0 || port > 65535) {
        fprintf(stderr, "cellq_analyzer: time scale 0.001..1e7 and port 0..65535\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    modbus_t *ctx = modbus_new_tcp(host, port);
    modbus_mapping_t *map = modbus_mapping_new(0, 0, MAP_SIZE, MAP_SIZE);
    if (ctx == NULL || map == NULL || !init_analyzer(initial_scale)) {
        fprintf(stderr, "cellq_analyzer: out of memory\n");
        return 1;
    }
    int server = modbus_tcp_listen(ctx, 8);
    if (server < 0) {
        fprintf(stderr, "cellq_analyzer: cannot listen on %s:%d: %s\n", host, port,
                modbus_strerror(errno));
        return 1;
    }
    struct sockaddr_in bound;
    socklen_t bound_len = sizeof bound;
    getsockname(server, (struct sockaddr *)&bound, &bound_len);
    printf("%s:%d\n", host, ntohs(bound.sin_port));
    fflush(stdout);

    int clients[MAX_CLIENTS];
    int nclients = 0;
    for (;;) {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(server, &rd);
        int top = server;
        for (int i = 0; i < nclients; i++) {
            FD_SET(clients[i], &rd);
            if (clients[i] > top)
                top = clients[i];
        }
        if (select(top + 1, &rd, NULL, NULL, NULL) < 0) {
            if (errno == EINTR)
                continue;
            perror("select");
            return 1;
        }
        if (FD_ISSET(server, &rd)) {
            int fd = accept(server, NULL, NULL);
            if (fd >= 0 && (nclients == MAX_CLIENTS || fd >= FD_SETSIZE))
                close(fd);
            else if (fd >= 0)
                clients[nclients++] = fd;
        }
        for (int i = 0; i < nclients; i++) {
            if (!FD_ISSET(clients[i], &rd))
                continue;
            if (serve_one(ctx, clients[i], map) == CLOSE) {
                close(clients[i]);
                clients[i--] = clients[--nclients];
            }
        }
    }
}
