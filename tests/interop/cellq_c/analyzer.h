/* analyzer.h: what the Modbus side of the C analyzer (cellq_analyzer.c) uses of its
   state (analyzer_jobs.c). */
#ifndef ANALYZER_H
#define ANALYZER_H

#include <stddef.h>
#include <stdint.h>

enum { SLOTS = 16, SLOT_BASE = 100, SLOT_SPAN = 32, MAX_RUNNING = 4, ASSAYS = 7 };
enum { MAP_SIZE = 1024, MAX_CLIENTS = 64, MAX_DRAWN = 65536, HEADER = 7 };
enum { HR_FAULT_CODE = 900, HR_FAULT_RAISE = 901, HR_TIME_SCALE = 902, HR_DRAWN = 904 };
enum { HR_TWIN_END = 912, IR_JOBS = 900, IR_TWIN_END = 902, IR_STATUS_END = 10 };
enum { FREE, QUEUED, RUNNING, DONE, FAILED, ABORTED };
enum { CMD_NONE, CMD_SUBMIT, CMD_ABORT, CMD_RELEASE };
enum { JF_NONE, JF_UNKNOWN_SAMPLE, JF_INSUFFICIENT_VOLUME, JF_ASSAY_FAILURE };
enum { EX_OK = 0, EX_FUNCTION = 1, EX_ADDRESS = 2, EX_VALUE = 3, EX_FAILURE = 4, EX_BUSY = 6 };
enum { CLOSE = -1 };

typedef struct {
    uint16_t hr[SLOT_SPAN]; /* the holding registers the daemon writes (b+0..11 named) */
    int state;
    uint32_t job_seq;
    uint16_t panel;
    char sample[17];
    uint64_t order;   /* submit order: queued jobs start oldest first */
    double started;   /* process time */
    double duration;  /* process seconds, the panel's assays one after another */
    int progress;     /* per mille, frozen once the job ends */
    int fault;
    float results[ASSAYS];
} slot_t;

extern slot_t slots[SLOTS];
extern uint32_t jobs_created;
extern int faulted;
extern uint16_t fault_code, fault_code_param, drawn_reg[8];
extern double scale, mono_start;

int init_analyzer(double initial_scale);
double mono(void);
double proc_now(void);
void set_scale(double s);
uint32_t u32_of(const uint16_t *r);
void put_u32(uint16_t *r, uint32_t v);
float f32_of(const uint16_t *r);
void put_f32(uint16_t *r, float f);
int sample_of(const uint16_t *r, char out[17]);
int mark_drawn(const char *sample);
int progress_at(const slot_t *s, double now);
void advance(double now);
int busy(void);
void raise_fault(uint16_t code, double now);
void clear_fault(double now);
int submit(int idx, double now);
int abort_job(int idx, double now);
int release_job(int idx);

#endif
