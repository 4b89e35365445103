/*
 * cellq_jobs.c: the command and job rules of the Cell Q client check (ICD 1.1 section 2
 * "Command handling" and the job life cycle, section 4 twin controls), written from the
 * ICD text alone. Reporting and Modbus helpers are in mbcheck.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mbcheck.h"

#define BIT(state) (1u << (state))
#define ACTIVE (BIT(QUEUED) | BIT(RUNNING))

/* Results of a slot (input registers b+8..21) read NaN, except the assays in ``keep``. */
static int results_nan(const uint16_t *r, unsigned keep)
{
    for (int a = 0; a < 7; a++)
        if (!(keep & (1u << a)) && !isnan(f32(&r[8 + 2 * a])))
            return 0;
    return 1;
}

static int other_free_slot(int not)
{
    for (int s = SLOTS - 1; s >= 0; s--)
        if (s != not && slot_state(s) == FREE)
            return s;
    return -1;
}

static uint16_t command_register(int s)
{
    uint16_t r[1] = {0xffff};
    rd_hr(BASE + SPAN * s + 11, 1, r);
    return r[0];
}

/* ------------------------------------------------------------------ refused submits */
static void check_submit_refusals(void)
{
    int s = free_slot();
    if (s < 0) {
        skip("2 submit", "refused submits", "no free slot");
        return;
    }
    uint32_t seq = new_seq(), before = jobs_created();
    struct { uint32_t seq; uint16_t panel; const char *sample; uint16_t cmd; const char *what; }
    bad[] = {
        {0, CELL_COUNT, "S1", SUBMIT, "JobSeq 0"},
        {seq, CELL_COUNT, "", SUBMIT, "an empty SampleId"},
        {seq, CELL_COUNT, "bad id", SUBMIT, "a SampleId with a space"},
        {seq, CELL_COUNT, "S\xc3\xa9", SUBMIT, "a non-ASCII SampleId"},
        {seq, 0, "S1", SUBMIT, "a panel of 0"},
        {seq, 0x80, "S1", SUBMIT, "a panel with bit 7"},
        {seq, 0xffff, "S1", SUBMIT, "a panel with every bit"},
        {seq, CELL_COUNT, "S1", 4, "command 4"},
        {seq, CELL_COUNT, "S1", 0xffff, "command 65535"},
    };
    int all_zero_cmd = 1, all_free = 1;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = command(s, bad[i].seq, bad[i].panel, bad[i].sample, bad[i].cmd);
        char name[96];
        snprintf(name, sizeof name, "a submit with %s answers 03", bad[i].what);
        if (bad[i].cmd != SUBMIT)
            snprintf(name, sizeof name, "%s (no such command) answers 03", bad[i].what);
        rule(rc == 3, "2 submit", name, "answer %d", rc);
        all_zero_cmd &= command_register(s) == 0;
        all_free &= slot_state(s) == FREE;
    }
    /* "AB", NUL, "CD": a NUL that is not padding */
    uint16_t v[12] = {(uint16_t)(seq >> 16), (uint16_t)seq, CELL_COUNT, 0x4142, 0, 0x4344};
    v[11] = SUBMIT;
    int rc = wr(BASE + SPAN * s, 12, v);
    rule(rc == 3, "2 submit", "a submit with a SampleId that has a NUL before its end answers 03",
         "answer %d", rc);
    all_free &= slot_state(s) == FREE;
    rule(all_zero_cmd, "2 submit", "the command register reads 0 after every refused command",
         NULL);
    rule(all_free && jobs_created() == before, "2 submit",
         "refused submits leave the slot free and create no job (IR 900..901)", NULL);
    uint16_t zero[12] = {0};
    wr(BASE + SPAN * s, 12, zero);
}

/* ------------------------------------------------------------------ a job, never drawn */
static void check_never_drawn(void)
{
    int s = free_slot(), b = BASE + SPAN * s;
    if (s < 0) {
        skip("2 submit", "job life cycle", "no free slot");
        return;
    }
    uint16_t r[SPAN], st[3];
    char sample[17];
    uint32_t seq = new_seq(), before = jobs_created();
    snprintf(sample, sizeof sample, "ND%u", (unsigned)(seq % 100000000u));
    rd_ir(0, 3, st);
    int rc = command(s, seq, CELL_COUNT | VIABILITY, sample, SUBMIT);
    rule(rc == 0, "2 submit", "a valid submit into a free slot is accepted", "answer %d", rc);
    if (rc) {
        uint16_t zero[12] = {0};
        wr(b, 12, zero);
        return;
    }
    slot_ir(s, r);
    rule(u32(r) == seq && (BIT(r[2]) & (ACTIVE | BIT(FAILED))), "2 submit",
         "the slot shows the JobSeq, queued, running or (no tube) failed",
         "JobSeq %u state %u", u32(r), r[2]);
    rule(command_register(s) == 0, "2 submit", "the command register reads 0 after a submit",
         NULL);
    rule(jobs_created() == before + 1, "4 twin 1.1", "1.1 the jobs counter (IR 900..901) +1",
         "%u -> %u", before, jobs_created());
    uint16_t st2[3];
    rd_ir(0, 3, st2);
    rule(st2[2] == st[2] - 1, "2 status", "IR 2 free slots one fewer after a submit",
         "%u -> %u", st[2], st2[2]);

    rc = command(s, seq, STERILITY, "OTHER1", SUBMIT);
    slot_ir(s, r);
    rule(rc == 0 && u32(r) == seq, "2 submit",
         "a re-submit of the slot's JobSeq (other panel, SampleId) is accepted, same job",
         "answer %d, JobSeq %u", rc, u32(r));
    rule(jobs_created() == before + 1, "4 twin 1.1",
         "1.1 the jobs counter does not count the idempotent repeat", "%u jobs",
         jobs_created() - before);
    uint16_t h[12];
    rd_hr(b, 12, h);
    if (h[2] != (CELL_COUNT | VIABILITY))
        note("2 submit", "after an idempotent re-submit with another panel the holding panel "
                         "register reads %u (the job's is %u; ICD silent)", h[2],
             CELL_COUNT | VIABILITY);
    int s2 = other_free_slot(s);
    if (s2 >= 0) {
        rc = command(s2, seq, CELL_COUNT, sample, SUBMIT);
        rule(rc == 3 && slot_state(s2) == FREE, "2 submit 1.1",
             "1.1 a submit of a JobSeq another slot holds answers 03, no second job",
             "answer %d, slot state %d", rc, slot_state(s2));
        cleanup(s2, seq); /* the second job a pre-1.1 analyzer made */
        uint16_t zero[12] = {0};
        wr(BASE + SPAN * s2, 12, zero);
    }
    uint32_t other = new_seq();
    rc = command(s, other, CELL_COUNT, "S2", SUBMIT);
    slot_ir(s, r);
    rule(rc == 6 && u32(r) == seq, "2 submit", "a submit into a slot that is not free answers 06",
         "answer %d", rc);

    int end = wait_slot(s, ACTIVE);
    slot_ir(s, r);
    rule(end == FAILED && r[4] == 1, "2 1.1 sample",
         "1.1 a job whose SampleId was never drawn fails with job fault 1",
         "state %d, job fault %u", end, r[4]);
    rule(results_nan(r, 0), "2 results", "a failed job's results read NaN", NULL);

    rc = seq_command(s, other, ABORT);
    rule(rc == 3, "2 abort", "an abort with another JobSeq than the slot's answers 03",
         "answer %d", rc);
    rc = seq_command(s, seq, ABORT);
    rule(rc == 6, "2 abort", "an abort of a failed job answers 06", "answer %d", rc);
    rc = seq_command(s, other, RELEASE);
    rule(rc == 3 && slot_state(s) == FAILED, "2 release",
         "a release with another JobSeq answers 03", "answer %d", rc);
    rc = seq_command(s, seq, RELEASE);
    uint16_t hr[SPAN];
    int read_hr = rd_hr(b, SPAN, hr);
    int read_ir = slot_ir(s, r);
    rule(rc == 0 && read_hr == 0 && read_ir == 0 && all_zero(hr, SPAN) && all_zero(r, SPAN),
         "2 release", "a release of a failed job frees the slot, its 64 registers read 0",
         "answer %d, state %u", rc, r[2]);
    rule(command_register(s) == 0, "2 release", "the command register reads 0 after a release",
         NULL);
    rc = seq_command(s, seq, RELEASE);
    rule(rc == 3, "2 release 1.1", "a release repeated on the freed slot answers 03 (JobSeq 0)",
         "answer %d", rc);
    rc = seq_command(s, seq, ABORT);
    rule(rc == 3, "2 abort", "an abort on a free slot with a JobSeq answers 03", "answer %d", rc);
    int z1 = seq_command(s, 0, ABORT), z2 = seq_command(s, 0, RELEASE);
    note("2 abort", "abort/release with JobSeq 0 on a free slot answer %d/%d "
                    "(the free slot's JobSeq is 0: 'matches' then 06, or 03?)", z1, z2);
    uint16_t zero[12] = {0};
    wr(b, 12, zero);
}

/* ------------------------------------------------------------------ faulted analyzer */
static void check_fault_order(void)
{
    uint16_t st[2];
    int s = free_slot();
    if (s < 0) {
        skip("2 submit", "check order while faulted", "no free slot");
        return;
    }
    uint32_t held = new_seq(), fresh = new_seq();
    command(s, held, CELL_COUNT, "NDF1", SUBMIT);
    wait_slot(s, ACTIVE);
    int s2 = other_free_slot(s);
    uint16_t fault[2] = {42, 1};
    int rc = wr(HR_FAULT, 2, fault);
    rd_ir(0, 2, st);
    rule(rc == 0 && st[0] == 2 && st[1] == 42, "4 twin",
         "HR 900 = 42, HR 901 = 1 fault the analyzer (IR 0 = 2, IR 1 = 42)",
         "answer %d, state %u, fault %u", rc, st[0], st[1]);
    uint32_t before = jobs_created();
    rc = command(s, held, CELL_COUNT, "NDF1", SUBMIT);
    rule(rc == 0, "2 submit",
         "while faulted, a re-submit of the slot's JobSeq is still idempotent", "answer %d", rc);
    rc = command(s2, held, CELL_COUNT, "NDF1", SUBMIT);
    rule(rc == 3, "2 submit 1.1",
         "1.1 while faulted, a JobSeq another slot holds answers 03 before 04", "answer %d", rc);
    rc = command(s2, 0, CELL_COUNT, "NDF1", SUBMIT);
    rule(rc == 3, "2 submit", "while faulted, a malformed submit answers 03 before 04", "answer %d",
         rc);
    rc = command(s2, fresh, CELL_COUNT, "NDF2", SUBMIT);
    rule(rc == 4, "2 submit", "while faulted, a valid submit answers 04", "answer %d", rc);
    rc = command(s, fresh, CELL_COUNT, "NDF2", SUBMIT);
    rule(rc == 4, "2 submit",
         "while faulted, a submit into a slot that is not free answers 04 before 06", "answer %d",
         rc);
    rule(jobs_created() == before && slot_state(s2) == FREE, "2 submit",
         "while faulted, no job was created", NULL);
    rc = wr1(HR_RAISE, 2);
    rule(rc == 3, "4 twin", "HR 901 = 2 (neither raise nor clear) answers 03", "answer %d", rc);
    rc = wr1(HR_RAISE, 0);
    rd_ir(0, 2, st);
    rule(rc == 0 && st[0] != 2 && st[1] == 0, "4 twin",
         "HR 901 = 0 clears the fault (IR 0 not 2, IR 1 = 0)", "answer %d, state %u, fault %u",
         rc, st[0], st[1]);
    uint16_t zero[12] = {0};
    if (s2 >= 0)
        wr(BASE + SPAN * s2, 12, zero);
    cleanup(s, held);
    wr(BASE + SPAN * s, 12, zero);
}

/* ------------------------------------------------------------------ time scale */
static void check_time_scale(void)
{
    uint16_t r[2], v[2];
    int rc = rd_hr(HR_SCALE, 2, r);
    float scale = f32(r);
    rule(rc == 0 && scale >= 0.001f && scale <= 1e7f, "4 twin",
         "HR 902..903 read the time scale as a float32 in 0.001..1e7", "answer %d, %g", rc,
         (double)scale);
    const float bad[] = {0.0005f, 2e7f, 0.0f, -1.0f, NAN, INFINITY};
    int refused = 1;
    char got[160] = "";
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        put_f32(v, bad[i]);
        int w = wr(HR_SCALE, 2, v);
        refused &= w == 3;
        snprintf(got + strlen(got), sizeof got - strlen(got), " %g:%d", (double)bad[i], w);
    }
    rd_hr(HR_SCALE, 2, r);
    rule(refused && f32(r) == scale, "4 twin 1.1",
         "1.1 a time scale outside 0.001..1e7 (or NaN, inf) answers 03, scale unchanged",
         "answers%s", got);
    put_f32(v, 0.001f);
    rc = wr(HR_SCALE, 2, v);
    put_f32(v, 3600.0f);
    int rc2 = wr(HR_SCALE, 2, v);
    rd_hr(HR_SCALE, 2, r);
    rule(rc == 0 && rc2 == 0 && f32(r) == 3600.0f, "4 twin",
         "a time scale in range (0.001, then 3600) is accepted and reads back", "answers %d %d",
         rc, rc2);
}

/* ------------------------------------------------------------------ known samples */
static void draw_samples(void)
{
    uint16_t v[8], r[8];
    for (int i = 0; i < 7; i++) {
        snprintf(samples[nsamples], sizeof samples[0], "DR%u-%d",
                 (unsigned)(seq_base % 10000000u), i);
        put_str(v, samples[nsamples]);
        if (wr(HR_DRAW, 8, v) == 0)
            nsamples++;
    }
    rule(nsamples == 7, "4 proposal", "HR 904..911 (proposed) marks a SampleId drawn", NULL);
    int rc = rd_hr(HR_DRAW, 8, r);
    rule(rc == 0 && memcmp(r, v, sizeof v) == 0, "4 proposal",
         "HR 904..911 (proposed) reads back the last SampleId drawn", "answer %d", rc);
    rc = wr(HR_DRAW, 4, v);
    int rc2 = wr(HR_DRAW, 8, (put_str(v, "bad id"), v));
    rule(rc == 3 && rc2 == 3, "4 proposal",
         "HR 904..911 (proposed), part of the string or a malformed id, answers 03",
         "answers %d %d", rc, rc2);
}

static void check_done(void)
{
    const char *sample = take_sample();
    int s = free_slot();
    uint16_t r[SPAN];
    uint32_t seq = new_seq();
    int rc = command(s, seq, CELL_COUNT | VIABILITY, sample, SUBMIT);
    int end = rc == 0 ? wait_slot(s, ACTIVE) : -1;
    slot_ir(s, r);
    float count = f32(&r[8]), viability = f32(&r[10]);
    rule(end == DONE && r[3] == 1000 && r[4] == 0, "2 results",
         "a job of a drawn sample runs to done, progress 1000, no fault",
         "submit %d, state %d, progress %u, fault %u", rc, end, r[3], r[4]);
    rule(isfinite(count) && count > 0 && isfinite(viability) && viability > 0 &&
             viability <= 100 && results_nan(r, CELL_COUNT | VIABILITY),
         "2 results",
         "done, cell count and viability as float32, NaN for the assays not in the panel",
         "count %g viability %g", (double)count, (double)viability);
    rc = seq_command(s, seq, RELEASE);
    slot_ir(s, r);
    rule(rc == 0 && all_zero(r, SPAN), "2 release", "a release of a done job frees the slot",
         "answer %d", rc);
}

static void check_abort_running(void)
{
    const char *sample = take_sample();
    int s = free_slot();
    uint16_t r[SPAN];
    uint32_t seq = new_seq();
    int rc = command(s, seq, STERILITY, sample, SUBMIT);
    int st = rc == 0 ? wait_slot(s, BIT(QUEUED)) : -1;
    slot_ir(s, r);
    rule(st == RUNNING && results_nan(r, 0), "2 results",
         "a running job's results read NaN (sterility, 7 days)", "state %d", st);
    rc = seq_command(s, seq, RELEASE);
    rule(rc == 6 && slot_state(s) == RUNNING, "2 release", "a release of a running job answers 06",
         "answer %d", rc);
    rc = seq_command(s, seq, ABORT);
    rule(rc == 0 && slot_state(s) == ABORTED, "2 abort", "an abort of a running job aborts it",
         "answer %d, state %d", rc, slot_state(s));
    rc = seq_command(s, seq, ABORT);
    rule(rc == 6, "2 abort 1.1", "an abort repeated on the aborted job answers 06 (not repeatable)",
         "answer %d", rc);
    rc = seq_command(s, seq, RELEASE);
    rule(rc == 0 && slot_state(s) == FREE, "2 release", "a release of an aborted job frees it",
         "answer %d", rc);
}

static void check_fault_running(void)
{
    int slot[5];
    uint32_t seq[5];
    int n = 0;
    for (; n < 5; n++) {
        slot[n] = free_slot();
        seq[n] = new_seq();
        if (slot[n] < 0 || command(slot[n], seq[n], STERILITY, take_sample(), SUBMIT) != 0)
            break;
    }
    int running = 0, queued = 0, state = analyzer_state();
    for (int i = 0; i < n; i++) {
        int st = slot_state(slot[i]);
        running += st == RUNNING;
        queued += st == QUEUED;
    }
    rule(n == 5 && running == 4 && queued == 1 && state == 1, "2 jobs",
         "five 7-day jobs, 4 run at once, the fifth waits queued, the analyzer is busy (1)",
         "%d submitted, %d running, %d queued, state %d", n, running, queued, state);
    set_fault(77, 1);
    int failed3 = 0, still_queued = -1;
    for (int i = 0; i < n; i++) {
        uint16_t r[SPAN];
        slot_ir(slot[i], r);
        failed3 += r[2] == FAILED && r[4] == 3;
        if (r[2] == QUEUED)
            still_queued = i;
    }
    rule(failed3 == 4 && still_queued >= 0, "2 faults",
         "an analyzer fault fails the running jobs (job fault 3), queued jobs wait",
         "%d failed with fault 3, queued one %s", failed3, still_queued >= 0 ? "waits" : "gone");
    set_fault(0, 0);
    int after = still_queued >= 0 ? slot_state(slot[still_queued]) : -1;
    rule(after == RUNNING, "2 faults", "after the fault is cleared the queued job runs",
         "state %d", after);
    for (int i = 0; i < n; i++)
        cleanup(slot[i], seq[i]);
}

/* ------------------------------------------------------------------ open points */
/* What the ICD leaves open: reported as NOTE lines, never as a verdict. */
static void probe_open_points(void)
{
    int s = free_slot(), b = BASE + SPAN * s;
    uint16_t r[12];
    if (s < 0)
        return;
    command(s, 0, CELL_COUNT, "KEPT1", SUBMIT); /* refused: JobSeq 0 */
    rd_hr(b, 12, r);
    note("2 submit", "after a refused one-request submit the slot's holding registers %s",
         all_zero(r, 11) ? "read 0 (the request had no effect)"
                         : "keep what it wrote (panel, SampleId)");
    uint16_t zero[12] = {0};
    wr(b, 12, zero);
    uint16_t v[3] = {0x4142, 0, 0};
    int rc = wr(b + 10, 3, v);
    note("2 1.1 whole", "a write of b+10..12 (part of the SampleId and an unnamed offset) "
                        "answers %d (02 first, or 03 first?)", rc);
    wr(b, 12, zero);
    const uint8_t read126[] = {0x04, 0x00, 0x00, 0x00, 126};
    int rc1 = raw_request(read126, sizeof read126, 1, 5.0);
    note("2 1.1 counts", "a read of 126 input registers from 0 (also outside the map) "
                         "answers %d (03 first, or 02 first?)", rc1);
    uint16_t fault[2] = {0, 1};
    rc = wr(HR_FAULT, 2, fault);
    uint16_t st[2] = {0, 0};
    rd_ir(0, 2, st);
    note("4 twin", "HR 900 = 0, HR 901 = 1 (a fault without a code) answers %d, state %u",
         rc, st[0]);
    set_fault(0, 0);
}

void check_jobs(int draw_via_904)
{
    /* process time fast enough that a 30 min panel is done within the hang guard, slow
       enough that a 7-day sterility job runs for minutes (main restores the scale) */
    uint16_t fast[2];
    put_f32(fast, 3600.0f);
    wr(HR_SCALE, 2, fast);
    check_submit_refusals();
    check_never_drawn();
    check_fault_order();
    check_time_scale();
    if (draw_via_904)
        draw_samples();
    if (samples_left() >= 1)
        check_done();
    else
        skip("2 results", "a job of a drawn sample runs to done", "no drawn sample given");
    if (samples_left() >= 1)
        check_abort_running();
    else
        skip("2 abort", "abort and release of a running job", "no drawn sample given");
    if (samples_left() >= 5)
        check_fault_running();
    else
        skip("2 faults", "4 jobs at once; a fault fails running jobs, queued wait",
             "needs 5 drawn samples");
    probe_open_points();
}
