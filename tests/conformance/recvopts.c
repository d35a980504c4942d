/* MSG_PEEK, MSG_DONTWAIT, FIONREAD, MSG_WAITALL, SO_RCVLOWAT.  Directional:
 * the subject receives, the other end sends (ordered by the side channel).
 *  1  10 bytes queued: FIONREAD 10; PEEK 4 leaves them queued; read 4; PEEK
 *     the rest twice; read it; DONTWAIT on an empty queue: EAGAIN.
 *  2  MSG_WAITALL for 20 bytes sent as 10 + 10 (150 ms apart): one call, 20.
 *  3  SO_RCVLOWAT 8, 4 + 4 bytes sent 150 ms apart: a blocking recv returns
 *     8 at once; with only 4 queued, MSG_DONTWAIT returns the 4.
 *  4  MSG_WAITALL for 20 when 5 arrive and then the sender's FIN: 5, then 0.
 *  5  MSG_PEEK|MSG_WAITALL for 6 with 6 queued, recv with a zero length,
 *     MSG_TRUNC (Linux TCP: discards the bytes, returns the count). */
#include "common.h"

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	char buf[256];
	if (C.server)
		conf_listen(8);
	int fd = conf_pair();
	if (C.subject) {
		step("1");
		sync_wait("s1");
		say("1 FIONREAD: %d", wait_fionread(fd, 10, 2000));
		ssize_t n = recv(fd, buf, 4, MSG_PEEK);
		say("1 recv 4 MSG_PEEK: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		say("1 FIONREAD: %d", fionread(fd));
		n = recv(fd, buf, 4, 0);
		say("1 recv 4: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		n = recv(fd, buf, sizeof buf, MSG_PEEK);
		say("1 recv 256 MSG_PEEK: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
		say("1 recv 256 MSG_PEEK|MSG_DONTWAIT: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		n = recv(fd, buf, sizeof buf, 0);
		say("1 recv 256: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		say("1 recv MSG_DONTWAIT: %s", res(recv(fd, buf, sizeof buf, MSG_DONTWAIT)));
		say("1 recv MSG_PEEK|MSG_DONTWAIT: %s", res(recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT)));
		say("1 FIONREAD: %d", fionread(fd));

		step("2");
		sync_post("w2");
		n = recv(fd, buf, 20, MSG_WAITALL);
		say("2 recv 20 MSG_WAITALL: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);

		step("3");
		say("3 SO_RCVLOWAT 8: %s", res(set_int(fd, SOL_SOCKET, SO_RCVLOWAT, 8)));
		say("3 SO_RCVLOWAT reads back %d", get_int(fd, SOL_SOCKET, SO_RCVLOWAT));
		sync_post("w3");
		n = recv(fd, buf, sizeof buf, 0);
		say("3 recv 256 with lowat 8: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		sync_post("w3b");
		say("3 FIONREAD once 4 arrived: %d", wait_fionread(fd, 4, 2000));
		n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		say("3 recv MSG_DONTWAIT with 4 queued, lowat 8: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		say("3 SO_RCVLOWAT 1: %s", res(set_int(fd, SOL_SOCKET, SO_RCVLOWAT, 1)));

		step("5");
		sync_post("w5");
		say("5 FIONREAD: %d", wait_fionread(fd, 6, 2000));
		n = recv(fd, buf, 6, MSG_PEEK | MSG_WAITALL);
		say("5 recv 6 MSG_PEEK|MSG_WAITALL: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		say("5 recv length 0: %s", res(recv(fd, buf, 0, 0)));
		say("5 recv 2 MSG_TRUNC: %s", res(recv(fd, NULL, 2, MSG_TRUNC)));
		n = recv(fd, buf, sizeof buf, 0);
		say("5 recv: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);

		step("4");
		sync_post("w4");
		n = recv(fd, buf, 20, MSG_WAITALL);
		say("4 recv 20 MSG_WAITALL, sender sends 5 and FIN: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		say("4 recv 20 MSG_WAITALL: %s", res(recv(fd, buf, 20, MSG_WAITALL)));
		sync_post("end");
	} else {
		step("1");
		say("1 send: %s", res(send(fd, "abcdefghij", 10, 0)));
		sync_post("s1");
		step("2");
		sync_wait("w2");
		say("2 send: %s", res(send(fd, "0123456789", 10, 0)));
		msleep(150);
		say("2 send: %s", res(send(fd, "ABCDEFGHIJ", 10, 0)));
		step("3");
		sync_wait("w3");
		/* Let the receiver block in its recv() first.  Linux wakes a
		 * reader held by SO_RCVLOWAT only when the queue itself reaches
		 * the mark (tcp_data_ready): one that has taken "klmn" already
		 * and waits for the rest is not woken by "opqr" (4 queued < 8)
		 * and sleeps until the FIN, which made the kernel's own
		 * reference run hang on a loaded machine. */
		msleep(200);
		say("3 send: %s", res(send(fd, "klmn", 4, 0)));
		msleep(150);
		say("3 send: %s", res(send(fd, "opqr", 4, 0)));
		sync_wait("w3b");
		say("3 send: %s", res(send(fd, "stuv", 4, 0)));
		step("5");
		sync_wait("w5");
		say("5 send: %s", res(send(fd, "PEEKME", 6, 0)));
		step("4");
		sync_wait("w4");
		say("4 send: %s", res(send(fd, "wxyz!", 5, 0)));
		msleep(100);
		say("4 shutdown SHUT_WR: %s", res(shutdown(fd, SHUT_WR)));
		sync_wait("end");
	}
	close(fd);
	if (C.server)
		close(C.lfd);
	return 0;
}
