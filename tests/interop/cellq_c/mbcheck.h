/* mbcheck.h: shared pieces of the Cell Q client check (see mbcheck.c, cellq_check.c). */
#ifndef MBCHECK_H
#define MBCHECK_H

#include <stddef.h>
#include <stdint.h>

#include <modbus.h>

enum { SLOTS = 16, BASE = 100, SPAN = 32 };
enum { FREE, QUEUED, RUNNING, DONE, FAILED, ABORTED };
enum { SUBMIT = 1, ABORT = 2, RELEASE = 3 };
enum { CELL_COUNT = 1, VIABILITY = 2, STERILITY = 32 };
enum { HR_FAULT = 900, HR_RAISE = 901, HR_SCALE = 902, HR_DRAW = 904, IR_JOBS = 900 };
enum { NO_ANSWER = -100, CLOSED = -101, IO_ERROR = -102 };
#define HANG_GUARD 30.0 /* wall seconds: only a guard against a hang */

extern const char *host;
extern int port;
extern modbus_t *mb;
extern int passed, failed, skipped;
extern uint32_t seq_base;
extern char samples[16][17];
extern uint16_t initial_scale[2]; /* HR 902..903 when the check started */
extern char last_answer[64]; /* the last raw answer's PDU in hex */
extern int nsamples, next_sample;

/* reporting: one line per rule */
void rule(int ok, const char *section, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void skip(const char *section, const char *name, const char *why);
void note(const char *section, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* libmodbus: 0, the exception code, or IO_ERROR */
int mb_result(int rc);
void mb_reconnect(void);
int rd_ir(int a, int n, uint16_t *v);
int rd_hr(int a, int n, uint16_t *v);
int wr(int a, int n, const uint16_t *v);
int wr1(int a, uint16_t v);

/* encodings and time */
uint32_t u32(const uint16_t *r);
float f32(const uint16_t *r);
void put_f32(uint16_t *r, float f);
void put_str(uint16_t *r, const char *s);
double wall(void);
void nap(double s);

/* raw frames on a plain socket */
int raw_open(void);
int raw_send(int fd, const uint8_t *buf, size_t n);
size_t frame(uint8_t *out, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t n);
int raw_answer(int fd, uint8_t *rsp, double timeout);
int raw_request(const uint8_t *pdu, size_t n, uint8_t unit, double timeout);

/* slots, jobs, samples, twin controls */
uint32_t new_seq(void);
int slot_ir(int s, uint16_t *r);
int slot_state(int s);
int free_slot(void);
int command(int s, uint32_t seq, uint16_t panel, const char *sample, uint16_t cmd);
int seq_command(int s, uint32_t seq, uint16_t cmd);
uint32_t jobs_created(void);
int analyzer_state(void);
int wait_slot(int s, unsigned mask);
void cleanup(int s, uint32_t seq);
int all_zero(const uint16_t *r, int n);
const char *take_sample(void);
int samples_left(void);
void set_fault(uint16_t code, int raise);

/* the command and job rules (cellq_jobs.c) */
void check_jobs(int draw_via_904);

#endif
