/* The capture wrapper's size limit, rotation, on/off switch and timestamps
 * (nic/pcap.h), over the in-memory wire.  test_nic.c covers the records. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nic/nic.h"
#include "nic/pcap.h"

#define HDR 24u /* pcap file header */
#define REC 16u /* record header */

static char dir[64];
static char path[96];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/xtcp-test-pcap-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/cap.pcap", dir);
	return 0;
}

static int teardown(void **state)
{
	char p[128];
	(void)state;
	unlink(path);
	for (int i = 1; i < 8; i++) {
		snprintf(p, sizeof(p), "%s.%d", path, i);
		unlink(p);
	}
	rmdir(dir);
	return 0;
}

static long file_size(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void send_n(struct xt_nic *nic, int n, uint32_t len, xt_time_t now)
{
	uint8_t buf[1600];
	memset(buf, 0xab, sizeof(buf));
	for (int i = 0; i < n; i++) {
		struct xt_frame f = { .data = buf, .len = len, .flags = 0 };
		assert_int_equal(xt_nic_tx(nic, &f, 1, now), 1);
	}
}

static struct xt_nic *open_capture(struct xt_nic *inner, uint64_t max, uint32_t files, bool off)
{
	struct xt_pcap_cfg c = { .path = path, .max_bytes = max, .files = files, .start_off = off };
	struct xt_nic *p = xt_pcap_open(inner, &c);
	assert_non_null(p);
	return p;
}

/* 1000-byte limit, 100-byte frames (116 with the record header): 8 records
 * fit a file (24 + 8 * 116 = 952; a 9th would make 1068), so 20 frames make
 * files of 8, 8 and 4 records; with 3 files kept, all three exist and
 * nothing beyond. */
static void rotation_keeps_files_and_limit(void **state)
{
	struct xt_nic *a, *b, *p;
	struct xt_pcap_stats st;
	char p1[128], p2[128], p3[128];
	(void)state;
	assert_int_equal(xt_loop_pair(NULL, &a, &b), 0);
	p = open_capture(a, 1000, 3, false);
	send_n(p, 20, 100, XT_SEC(1));
	assert_int_equal(xt_pcap_stats(p, &st), 0);
	assert_int_equal(st.frames, 20);
	assert_int_equal(st.rotations, 2);
	assert_true(st.on);
	xt_nic_close(p);
	xt_nic_close(b);
	snprintf(p1, sizeof(p1), "%s.1", path);
	snprintf(p2, sizeof(p2), "%s.2", path);
	snprintf(p3, sizeof(p3), "%s.3", path);
	assert_int_equal(file_size(p2), HDR + 8 * (REC + 100)); /* oldest */
	assert_int_equal(file_size(p1), HDR + 8 * (REC + 100));
	assert_int_equal(file_size(path), HDR + 4 * (REC + 100)); /* newest */
	assert_int_equal(file_size(p3), -1);
}

/* One file: it is started over, never above the limit. */
static void rotation_one_file_starts_over(void **state)
{
	struct xt_nic *a, *b, *p;
	struct xt_pcap_stats st;
	char p1[128];
	(void)state;
	assert_int_equal(xt_loop_pair(NULL, &a, &b), 0);
	p = open_capture(a, 1000, 1, false);
	send_n(p, 30, 100, XT_SEC(1));
	assert_int_equal(xt_pcap_stats(p, &st), 0);
	xt_nic_close(p);
	xt_nic_close(b);
	assert_true(st.rotations >= 3);
	assert_true(file_size(path) <= 1000);
	assert_int_equal((file_size(path) - HDR) % (REC + 100), 0);
	snprintf(p1, sizeof(p1), "%s.1", path);
	assert_int_equal(file_size(p1), -1);
}

/* Off: nothing recorded and no file made; on: the file appears; off and on
 * again: appended, not truncated. */
static void switch_off_and_on(void **state)
{
	struct xt_nic *a, *b, *p;
	struct xt_pcap_stats st;
	(void)state;
	assert_int_equal(xt_loop_pair(NULL, &a, &b), 0);
	p = open_capture(a, 0, 1, true);
	send_n(p, 5, 100, XT_SEC(1));
	assert_int_equal(file_size(path), -1);
	assert_int_equal(xt_pcap_set_on(p, true), 0);
	send_n(p, 2, 100, XT_SEC(2));
	xt_pcap_flush(p);
	assert_int_equal(file_size(path), HDR + 2 * (REC + 100));
	assert_int_equal(xt_pcap_set_on(p, false), 0);
	send_n(p, 3, 100, XT_SEC(3));
	assert_int_equal(xt_pcap_set_on(p, true), 0);
	send_n(p, 1, 100, XT_SEC(4));
	assert_int_equal(xt_pcap_stats(p, &st), 0);
	assert_int_equal(st.frames, 3);
	xt_nic_close(p);
	assert_int_equal(file_size(path), HDR + 3 * (REC + 100));
	/* every frame reached the wire, captured or not */
	struct xt_frame f[64];
	int got = 0, n;
	while ((n = xt_nic_rx(b, f, 64, XT_SEC(10))) > 0)
		got += n;
	assert_int_equal(got, 11);
	xt_nic_close(b);
}

/* The wrapper answers to the inner backend's name, gives the inner nic
 * back, and refuses to switch what is not a capture. */
static void identity_and_offset(void **state)
{
	struct xt_nic *a, *b, *p;
	(void)state;
	assert_int_equal(xt_loop_pair(NULL, &a, &b), 0);
	struct xt_pcap_cfg c = { .path = path, .ts_offset_ns = 1000000000ll * 1700000000ll };
	p = xt_pcap_open(a, &c);
	assert_non_null(p);
	assert_string_equal(p->ops->name, a->ops->name);
	assert_ptr_equal(xt_pcap_inner(p), a);
	assert_null(xt_pcap_inner(a));
	assert_int_equal(xt_pcap_set_on(a, true), -EINVAL);
	send_n(p, 1, 60, XT_SEC(5) + XT_US(7));
	xt_nic_close(p);
	xt_nic_close(b);
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	uint32_t rec[4];
	assert_int_equal(fseek(fp, HDR, SEEK_SET), 0);
	assert_int_equal(fread(rec, sizeof(rec), 1, fp), 1);
	fclose(fp);
	assert_int_equal(rec[0], 1700000005u); /* wall clock = now + offset */
	assert_int_equal(rec[1], 7);
	assert_int_equal(rec[2], 60);
}

/* A gathered frame (header, then two payload pieces) is captured whole, and
 * reaches the peer whole through the loop backend behind the capture. */
static void gathered_frame_whole(void **state)
{
	struct xt_nic *a, *b, *p;
	uint8_t hdr[54], p0[301], p1[200], want[555], rec[4 * 4 + 555];
	(void)state;
	for (unsigned i = 0; i < sizeof want; i++)
		want[i] = (uint8_t)(i * 37 + 5);
	memcpy(hdr, want, sizeof hdr);
	memcpy(p0, want + sizeof hdr, sizeof p0);
	memcpy(p1, want + sizeof hdr + sizeof p0, sizeof p1);
	assert_int_equal(xt_loop_pair(NULL, &a, &b), 0);
	struct xt_pcap_cfg c = { .path = path };
	p = xt_pcap_open(a, &c);
	assert_non_null(p);
	assert_true(p->caps.tx_gather); /* the loop backend's, passed on */
	struct xt_frame f = { .data = hdr, .len = sizeof hdr, .flags = XT_FRAME_GATHER,
			      .pay = { p0, p1 }, .pay_len = { sizeof p0, sizeof p1 } };
	assert_int_equal(xt_frame_wire_len(&f), sizeof want);
	assert_int_equal(xt_nic_tx(p, &f, 1, XT_SEC(1)), 1);
	struct xt_frame got[4];
	assert_int_equal(xt_nic_rx(b, got, 4, XT_SEC(2)), 1);
	assert_int_equal(got[0].len, sizeof want);
	assert_memory_equal(got[0].data, want, sizeof want);
	xt_nic_close(p);
	xt_nic_close(b);
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, HDR, SEEK_SET), 0);
	assert_int_equal(fread(rec, sizeof rec, 1, fp), 1);
	fclose(fp);
	uint32_t incl;
	memcpy(&incl, rec + 8, 4);
	assert_int_equal(incl, sizeof want);
	assert_memory_equal(rec + 16, want, sizeof want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(rotation_keeps_files_and_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(rotation_one_file_starts_over, setup, teardown),
		cmocka_unit_test_setup_teardown(switch_off_and_on, setup, teardown),
		cmocka_unit_test_setup_teardown(identity_and_offset, setup, teardown),
		cmocka_unit_test_setup_teardown(gathered_frame_whole, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
