/* TCP_QUICKACK reads back Linux's interactive (ping-pong) mode.
 * Directional: the subject's mode is read, the other end sends.
 *  1  a fresh connection: 1.
 *  2  a request read and answered at once: 0 (a reply within the ACK
 *     timeout of data received: ping-pong).
 *  3  a message read and left unanswered for 300 ms: 1 (the delayed ACK
 *     had to go out alone).
 *  4  set 0 reads 0, set 1 reads 1.
 *  5  data sent 300 ms after the last data received: still 1.
 * The other end's reads make sure each message crossed before the next,
 * and it closes only at the end: a FIN puts Linux in ping-pong mode. */
#include "common.h"

static int quickack(int fd) { return get_int(fd, IPPROTO_TCP, TCP_QUICKACK); }

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	char buf[64];
	if (C.server)
		conf_listen(8);
	int fd = conf_pair();
	if (C.subject) {
		step("1");
		say("1 TCP_QUICKACK on a fresh connection: %d", quickack(fd));
		step("2");
		ssize_t n = read_n(fd, buf, 3);
		say("2 read request: %s", res(n));
		say("2 send reply: %s", res(send(fd, "rep", 3, 0)));
		say("2 TCP_QUICKACK after answering at once: %d", quickack(fd));
		step("3");
		n = read_n(fd, buf, 4);
		say("3 read message: %s", res(n));
		msleep(300);
		say("3 TCP_QUICKACK 300 ms later, unanswered: %d", quickack(fd));
		step("4");
		say("4 set TCP_QUICKACK 0: %s", res(set_int(fd, IPPROTO_TCP, TCP_QUICKACK, 0)));
		say("4 TCP_QUICKACK: %d", quickack(fd));
		say("4 set TCP_QUICKACK 1: %s", res(set_int(fd, IPPROTO_TCP, TCP_QUICKACK, 1)));
		say("4 TCP_QUICKACK: %d", quickack(fd));
		step("5");
		msleep(300);
		say("5 send unprompted: %s", res(send(fd, "news", 4, 0)));
		say("5 TCP_QUICKACK: %d", quickack(fd));
		sync_post("end");
	} else {
		step("2");
		say("2 send request: %s", res(send(fd, "req", 3, 0)));
		say("2 read reply: %s", res(read_n(fd, buf, 3)));
		step("3");
		say("3 send message: %s", res(send(fd, "more", 4, 0)));
		step("5");
		say("5 read: %s", res(read_n(fd, buf, 4)));
		sync_wait("end");
	}
	close(fd);
	if (C.server)
		close(C.lfd);
	return 0;
}
