/*
 * cellq_check.c: a third-party client check of a Cell Q analyzer, written from the
 * ICD 1.1 text alone (section 2 and the Cell Q twin controls of section 4), in C with
 * libmodbus; raw Modbus TCP frames go over a plain socket where libmodbus refuses to
 * send a malformed request (mbcheck.c). Nothing of cellfab is used. This file: the
 * status, map and framing rules, and main; cellq_jobs.c: the command and job rules.
 *
 * Usage: cellq_check HOST:PORT [--draw-via-904] [SAMPLE...]
 *   SAMPLE...       SampleIds a shuttle of the cell has drawn (known to the analyzer);
 *                   the rules that need known samples SKIP without enough of them
 *                   (7 cover every rule).
 *   --draw-via-904  the analyzer has no shuttle: draw samples through the proposed twin
 *                   extension, holding registers 904..911 (cellq_analyzer.c).
 *
 * Prints one line per rule, "PASS|FAIL|SKIP  <ICD section>  <rule>[: detail]", NOTE
 * lines for what the ICD leaves open, then "N passed, N failed, N skipped"; exits 1
 * when a rule failed. Rules marked 1.1 in the section column are new in ICD 1.1.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mbcheck.h"

/* ------------------------------------------------------------------ 2: status, map */
static void check_status(void)
{
    uint16_t r[10];
    int rc = rd_ir(0, 10, r);
    rule(rc == 0, "2 status", "input registers 0..9 read in one request", "answer %d", rc);
    if (rc)
        return;
    rule(r[5] == 1, "2 status", "IR 5 ICD version reads 1", "read %u", r[5]);
    rule(r[0] <= 2, "2 status", "IR 0 state 0 idle, 1 busy or 2 faulted (twins never 3)",
         "read %u", r[0]);
    rule(r[0] == 2 || r[1] == 0, "2 status", "IR 1 fault code 0 when not faulted",
         "state %u fault %u", r[0], r[1]);
    int nfree = 0, active = 0;
    for (int s = 0; s < SLOTS; s++) {
        int st = slot_state(s);
        nfree += st == FREE;
        active += st == QUEUED || st == RUNNING;
    }
    rule(r[2] == nfree, "2 status", "IR 2 free job slots = slots in state 0", "IR 2 %u, %d free",
         r[2], nfree);
    rule(r[0] == 2 || (r[0] == 1) == (active > 0), "2 status",
         "busy (1) exactly while a job is queued or running", "state %u, %d active", r[0], active);
    double t0 = wall();
    uint32_t hb0 = u32(&r[3]);
    nap(1.5);
    rc = rd_ir(3, 2, r);
    double dt = wall() - t0;
    uint32_t d = u32(r) - hb0;
    rule(rc == 0 && d >= (uint32_t)dt - 1 && d <= (uint32_t)dt + 1, "2 status",
         "heartbeat IR 3..4 +1 per second of wall time", "+%u in %.2f s", d, dt);
}

static void check_map(void)
{
    uint16_t r[128];
    int s = free_slot(), b = BASE + SPAN * s;
    struct { int hr, addr, n; const char *what; } outside[] = {
        {0, 10, 1, "IR 10"},   {0, 99, 1, "IR 99"},   {0, 9, 2, "IR 9..10"},
        {0, 612, 1, "IR 612"}, {0, 611, 2, "IR 611..612"}, {1, 0, 1, "HR 0"},
        {1, 99, 1, "HR 99"},   {1, 612, 1, "HR 612"}, {1, 611, 2, "HR 611..612"},
        {1, 899, 1, "HR 899"}, {0, 899, 1, "IR 899"},
    };
    for (size_t i = 0; i < sizeof outside / sizeof *outside; i++) {
        int rc = outside[i].hr ? rd_hr(outside[i].addr, outside[i].n, r)
                               : rd_ir(outside[i].addr, outside[i].n, r);
        char name[96];
        snprintf(name, sizeof name, "a read of %s (outside the map) answers 02", outside[i].what);
        rule(rc == 2, "2 map", name, "answer %d", rc);
    }
    int rc = wr1(612, 1);
    rule(rc == 2, "2 map", "a write of HR 612 (outside the map) answers 02", "answer %d", rc);
    rc = wr1(0, 1);
    rule(rc == 2, "2 map", "a write of HR 0 (outside the map) answers 02", "answer %d", rc);
    if (s < 0) {
        skip("2 map", "slot map", "no free slot");
        return;
    }
    rc = rd_hr(BASE + SPAN * 15, 32, r);
    int rc2 = rd_ir(BASE + SPAN * 15, 32, r);
    rule(rc == 0 && rc2 == 0, "2 map", "slot 15 (the last, b = 580) reads whole in one request",
         "holding %d, input %d", rc, rc2);
    rc = rd_ir(BASE, 125, r);
    rule(rc == 0, "2 map", "a read of 125 input registers over slots 0..3 answers", "answer %d",
         rc);
    rc = rd_hr(b, 32, r);
    rule(rc == 0 && all_zero(&r[12], 20), "2 map",
         "unnamed holding offsets b+12..31 of a slot read 0", "answer %d", rc);
    rc = rd_ir(b, 32, r);
    rule(rc == 0 && all_zero(r, 32), "2 map", "a free slot's 32 input registers read 0",
         "answer %d", rc);
    rc = wr1(b + 12, 7);
    rule(rc == 2, "2 map", "a write of an unnamed offset (b+12) answers 02", "answer %d", rc);
    uint16_t two[2] = {0, 0};
    rc = wr(b + 11, 2, two);
    rule(rc == 2, "2 map", "a write of b+11..12 (unnamed b+12) answers 02", "answer %d", rc);
    rc = wr1(b + 2, 3);
    rc2 = rd_hr(b + 2, 1, r);
    rule(rc == 0 && rc2 == 0 && r[0] == 3, "2 map", "the panel register (b+2) is written and read",
         "write %d read %d value %u", rc, rc2, r[0]);
    wr1(b + 2, 0);
}

/* ------------------------------------------------------------------ 2 1.1: framing */
static void check_function_codes(void)
{
    uint8_t bits[8] = {0};
    uint16_t reg[4];
    int s = free_slot(), b = BASE + SPAN * (s < 0 ? 0 : s);
    struct { int rc; const char *what; } lib[] = {
        {mb_result(modbus_read_bits(mb, 0, 1, bits)), "01 read coils"},
        {mb_result(modbus_read_input_bits(mb, 0, 1, bits)), "02 read discrete inputs"},
        {mb_result(modbus_write_bit(mb, 0, 1)), "05 write single coil"},
        {mb_result(modbus_write_bits(mb, 0, 1, bits)), "15 write multiple coils"},
        {mb_result(modbus_mask_write_register(mb, b + 2, 0xffff, 0)), "22 mask write register"},
        {mb_result(modbus_write_and_read_registers(mb, b + 2, 1, reg, 0, 1, reg)),
         "23 read/write multiple registers"},
    };
    for (size_t i = 0; i < sizeof lib / sizeof *lib; i++) {
        char name[96];
        snprintf(name, sizeof name, "1.1 function %s answers exception 01", lib[i].what);
        rule(lib[i].rc == 1, "2 1.1 fc", name, "answer %d", lib[i].rc);
    }
    struct { uint8_t pdu[8]; size_t n; const char *what; } raw[] = {
        {{0x07}, 1, "07 read exception status"},
        {{0x08, 0x00, 0x00, 0x12, 0x34}, 5, "08 diagnostics (echo)"},
        {{0x11}, 1, "17 report server id"},
        {{0x2b, 0x0e, 0x01, 0x00}, 4, "43 read device identification"},
        {{0x41, 0x00, 0x01}, 3, "65 (user-defined)"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
        int rc = raw_request(raw[i].pdu, raw[i].n, 1, 5.0);
        char name[96];
        snprintf(name, sizeof name, "1.1 function %s answers exception 01", raw[i].what);
        rule(rc == 1, "2 1.1 fc", name, "answer %d (PDU %s)", rc, last_answer);
    }
    int rc = rd_ir(5, 1, reg);
    rule(rc == 0 && reg[0] == 1, "2 1.1 fc", "after them the connection still answers in step",
         "answer %d", rc);
}

static void check_counts(void)
{
    struct { uint8_t pdu[8]; size_t n; const char *what; } bad[] = {
        {{0x03, 0x00, 100, 0x00, 0}, 5, "read of 0 holding registers"},
        {{0x04, 0x00, 100, 0x00, 0}, 5, "read of 0 input registers"},
        {{0x03, 0x00, 100, 0x00, 126}, 5, "read of 126 holding registers (all in the map)"},
        {{0x04, 0x00, 100, 0x00, 126}, 5, "read of 126 input registers (all in the map)"},
        {{0x10, 0x00, 102, 0x00, 0, 0}, 6, "write of 0 registers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = raw_request(bad[i].pdu, bad[i].n, 1, 5.0);
        char name[96];
        snprintf(name, sizeof name, "1.1 a %s answers 03", bad[i].what);
        rule(rc == 3, "2 1.1 counts", name, "answer %d (PDU %s)", rc, last_answer);
    }
    /* A write of 124 registers: the count alone (246 data bytes, a frame within the
       Modbus PDU limit), and the whole of it (248 bytes: one byte over the 260-byte
       Modbus TCP ADU). Both address b+0 of slot 0, so the range also holds unnamed
       offsets (02): the Modbus order (quantity before address) makes it 03. */
    uint8_t pdu[256] = {0x10, 0x00, BASE, 0x00, 124, 246};
    int rc = raw_request(pdu, 6 + 246, 1, 5.0);
    rule(rc == 3, "2 1.1 counts", "1.1 a write of 124 registers (byte count 246) answers 03",
         "answer %d (PDU %s)", rc, last_answer);
    pdu[5] = 248;
    rc = raw_request(pdu, 6 + 248, 1, 5.0);
    rule(rc == 3, "2 1.1 counts",
         "1.1 a write of 124 registers (248 bytes, 261-byte ADU) answers 03", "answer %d (%s)",
         rc, last_answer);
}

static void check_whole_values(void)
{
    uint16_t r[12], v[12] = {0};
    int s = free_slot(), b = BASE + SPAN * s;
    if (s < 0) {
        skip("2 1.1 whole", "whole values", "no free slot");
        return;
    }
    struct { int addr, n; const char *what; } part[] = {
        {b + 0, 1, "JobSeq high word alone (06)"}, {b + 1, 1, "JobSeq low word alone (06)"},
        {b + 1, 2, "JobSeq low word + panel"},     {b + 3, 7, "7 of the SampleId's 8 registers"},
        {b + 10, 2, "SampleId's last register + command"},
        {HR_SCALE, 1, "time scale high word alone (06)"},
        {HR_SCALE + 1, 1, "time scale low word alone (06)"},
    };
    for (size_t i = 0; i < sizeof part / sizeof *part; i++) {
        v[0] = 0x4142;
        int rc = part[i].n == 1 ? wr1(part[i].addr, v[0]) : wr(part[i].addr, part[i].n, v);
        char name[96];
        snprintf(name, sizeof name, "1.1 a write of part of a value (%s) answers 03",
                 part[i].what);
        rule(rc == 3, "2 1.1 whole", name, "answer %d", rc);
    }
    int rc = rd_hr(b, 12, r);
    rule(rc == 0 && all_zero(r, 12), "2 1.1 whole",
         "1.1 the refused partial writes changed nothing", "answer %d, b+0 %04x b+1 %04x b+3 %04x", rc, r[0], r[1], r[3]);
    uint16_t scale[2];
    rc = rd_hr(HR_SCALE, 2, scale);
    rule(rc == 0 && scale[0] == initial_scale[0] && scale[1] == initial_scale[1], "2 1.1 whole",
         "1.1 the refused partial writes left the time scale as it was", "%g, was %g",
         (double)f32(scale), (double)f32(initial_scale));
    wr(HR_SCALE, 2, initial_scale); /* an analyzer that took them must not stay slowed */
    uint16_t whole[11] = {0x1234, 0x5678, 3, 0x5331};
    rc = wr(b, 11, whole);
    int rc2 = rd_hr(b, 11, r);
    rule(rc == 0 && rc2 == 0 && u32(r) == 0x12345678u && r[2] == 3 && r[3] == 0x5331,
         "2 1.1 whole", "whole JobSeq, panel and SampleId written in one request read back",
         "write %d read %d", rc, rc2);
    rc = rd_ir(b, 3, r);
    rule(rc == 0 && u32(r) == 0 && r[2] == FREE, "2 1.1 whole",
         "writing them without a command leaves the slot free", "state %u", r[2]);
    memset(whole, 0, sizeof whole);
    wr(b, 11, whole);
}

static void check_back_to_back(void)
{
    uint8_t buf[128], rsp[300];
    size_t n = 0;
    const uint8_t read_status[] = {0x04, 0x00, 0x00, 0x00, 0x06};
    const uint8_t read_slot[] = {0x03, 0x00, BASE, 0x00, 0x0c};
    const uint8_t coils[] = {0x01, 0x00, 0x00, 0x00, 0x01};
    const uint8_t version[] = {0x04, 0x00, 0x05, 0x00, 0x01};
    n += frame(buf + n, 0x0101, 1, read_status, sizeof read_status);
    n += frame(buf + n, 0x0102, 1, read_slot, sizeof read_slot);
    n += frame(buf + n, 0x0103, 1, coils, sizeof coils);
    n += frame(buf + n, 0x0104, 1, version, sizeof version);
    int fd = raw_open();
    raw_send(fd, buf, n);
    const uint8_t want_fc[] = {0x04, 0x03, 0x81, 0x04};
    int ok = 1;
    char got[128] = "";
    for (int i = 0; i < 4; i++) {
        int rc = raw_answer(fd, rsp, 5.0);
        int tid = rc > 0 ? (rsp[0] << 8) | rsp[1] : rc;
        snprintf(got + strlen(got), sizeof got - strlen(got), " %04x/%02x", (unsigned)tid,
                 rc > 0 ? rsp[7] : 0);
        ok &= rc > 0 && tid == 0x0101 + i && rsp[7] == want_fc[i];
        if (rc < 0)
            break;
    }
    close(fd);
    rule(ok, "2 1.1 framing", "1.1 four requests sent back to back are each answered, in order",
         "answers (tid/fc):%s", got);
}

static void check_unit_ids(void)
{
    const uint8_t read_status[] = {0x04, 0x00, 0x00, 0x00, 0x01};
    const int units[] = {0, 2, 247, 255};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        uint8_t buf[64], rsp[300];
        int fd = raw_open();
        size_t n = frame(buf, 0x0201, (uint8_t)units[i], read_status, sizeof read_status);
        raw_send(fd, buf, n);
        int silent = raw_answer(fd, rsp, 1.0);
        n = frame(buf, 0x0202, 1, read_status, sizeof read_status);
        raw_send(fd, buf, n);
        int rc = raw_answer(fd, rsp, 5.0);
        int then = rc > 0 ? (rsp[0] << 8) | rsp[1] : rc;
        close(fd);
        char name[96];
        snprintf(name, sizeof name, "unit id %d gets no answer (unit 1 then does)", units[i]);
        rule(silent == NO_ANSWER && then == 0x0202, "2 unit", name,
             "unit %d: %d, then unit 1: tid %04x", units[i], silent, (unsigned)then);
    }
}

static void check_unparsable(void)
{
    struct { uint8_t bytes[16]; size_t n; const char *what; } junk[] = {
        {{0, 1, 0xbe, 0xef, 0, 6, 1, 3, 0, 0, 0, 1}, 12, "protocol id 0xBEEF"},
        {{0, 2, 0, 0, 0, 0, 1, 3, 0, 0, 0, 1}, 12, "MBAP length 0"},
        {{0, 3, 0, 0, 0, 1, 1}, 7, "MBAP length 1 (no function code)"},
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 12,
         "twelve 0xFF bytes"},
        {{0, 4, 0, 0, 0, 3, 1, 3, 0, 0, 0, 1}, 12, "MBAP length 3 for a 6-byte read"},
    };
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        uint8_t rsp[300];
        int fd = raw_open();
        raw_send(fd, junk[i].bytes, junk[i].n);
        int rc;
        double until = wall() + 3.0;
        while ((rc = raw_answer(fd, rsp, until - wall())) > 0) /* answers first, then EOF */
            ;
        close(fd);
        char name[96];
        snprintf(name, sizeof name, "1.1 an unparsable frame (%s) closes the connection",
                 junk[i].what);
        rule(rc == CLOSED, "2 1.1 framing", name, "%s",
             rc == NO_ANSWER ? "left open and silent for 3 s" : "error");
    }
    uint16_t r[1];
    mb_reconnect();
    int rc = rd_ir(5, 1, r);
    rule(rc == 0 && r[0] == 1, "2 1.1 framing", "the analyzer answers a new connection after them",
         "answer %d", rc);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strchr(argv[1], ':')) {
        fprintf(stderr, "usage: cellq_check HOST:PORT [--draw-via-904] [SAMPLE...]\n");
        return 2;
    }
    static char hostbuf[256];
    snprintf(hostbuf, sizeof hostbuf, "%s", argv[1]);
    *strrchr(hostbuf, ':') = '\0';
    host = hostbuf;
    port = atoi(strrchr(argv[1], ':') + 1);
    int draw_via_904 = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--draw-via-904") == 0)
            draw_via_904 = 1;
        else if (nsamples < 16)
            snprintf(samples[nsamples++], sizeof samples[0], "%s", argv[i]);
    }
    seq_base = (uint32_t)(time(NULL) % 100000) * 10000u + (uint32_t)getpid() % 10000u + 1000u;
    mb_reconnect();
    if (rd_hr(HR_SCALE, 2, initial_scale) != 0) {
        fprintf(stderr, "cellq_check: %s has no twin controls (HR 902..903)\n", argv[1]);
        return 2;
    }
    check_status();
    check_map();
    check_function_codes();
    check_counts();
    check_whole_values();
    check_back_to_back();
    check_unit_ids();
    check_unparsable();
    check_jobs(draw_via_904);
    wr(HR_SCALE, 2, initial_scale);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    modbus_close(mb);
    modbus_free(mb);
    return failed ? 1 : 0;
}
