/* xtcp-verbs-check: is this host ready for XTCP_NIC=verbs on an interface?
 *
 *   xtcp-verbs-check [-l LIBRARY] [-q] IFNAME
 *
 * Checks, in order, and says for each what is missing and how to fix it:
 * libibverbs (loaded the way libxtcp.so loads it: dlopen, versioned
 * symbols; -l or XTCP_IBVERBS_LIB override the path), the interface, the
 * RDMA device behind it, access to the device, the port (ACTIVE, Ethernet),
 * CAP_NET_RAW, the locked-memory limit for the buffer pool, creating a raw
 * packet QP and bringing it to RTS, creating a flow rule and a DONT_TRAP copy
 * rule (ARP shared with the kernel), checksum offload, TSO and inline sends.
 *
 * Exit status: 0 ready (warnings are things that work, only slower or with
 * less), 1 something required is missing, 2 usage.  -q prints only problems.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../nic/verbs.h"

static const char *fix_for(int check, int err, const char *ifname, const char *device)
{
	static char buf[512];

	switch (check) {
	case XT_VCHK_LIBRARY:
		if (err == ENOSYS)
			return "the library is not rdma-core's libibverbs (or is older than rdma-core 17): "
			       "install the distribution's libibverbs1, or point XTCP_IBVERBS_LIB at it";
		return "install rdma-core's user-space verbs: apt-get install libibverbs1 ibverbs-providers "
		       "(dnf install libibverbs), or set XTCP_IBVERBS_LIB=/path/to/libibverbs.so.1";
	case XT_VCHK_INTERFACE:
		return "check the name with `ip link`, and run in the network namespace that holds it";
	case XT_VCHK_DEVICE:
		snprintf(buf, sizeof(buf),
			 "load the RDMA driver of the NIC (modprobe mlx5_ib for ConnectX-4 Lx and later, mlx4_ib "
			 "for ConnectX-3) and check `rdma link` / `ibv_devices` list a device for %s; veth, "
			 "bridges, tun and virtio-net have no RDMA device: use XTCP_NIC=packet there", ifname);
		return buf;
	case XT_VCHK_OPEN:
		if (err == EACCES || err == EPERM)
			return "grant read/write access to /dev/infiniband/uverbs*: run as root, or a udev rule "
			       "(KERNEL==\"uverbs*\", MODE=\"0660\", GROUP=\"rdma\") and membership of that group";
		return "see `dmesg` for the driver's errors; `ibv_devinfo` must be able to open the device";
	case XT_VCHK_PORT:
		if (err == EPROTONOSUPPORT)
			return "switch the port to Ethernet: mlxconfig -d <pci address> set LINK_TYPE_P1=2, then reboot";
		snprintf(buf, sizeof(buf),
			 "bring the link up: cable or transceiver, switch port, `ip link set %s up`; "
			 "`ibv_devinfo -d %s` shows the port state", ifname, device[0] ? device : "<device>");
		return buf;
	case XT_VCHK_CAP_NET_RAW:
		return "run as root, or `setcap cap_net_raw,cap_ipc_lock+ep <program>` (a container needs "
		       "--cap-add NET_RAW)";
	case XT_VCHK_MEMLOCK:
		return "raise the locked-memory limit: `ulimit -l unlimited`, memlock in "
		       "/etc/security/limits.conf or LimitMEMLOCK=infinity in a systemd unit; or grant CAP_IPC_LOCK";
	case XT_VCHK_RAW_QP:
		if (err == EPERM || err == EACCES)
			return "raw packet QPs need CAP_NET_RAW: run as root, or setcap cap_net_raw+ep <program>";
		if (err == EOPNOTSUPP)
			return "raw packet QPs need a mlx5 (ConnectX-4 Lx or later) or mlx4 (ConnectX-3) port in "
			       "Ethernet mode; Soft-RoCE (rxe) and siw have none";
		return "see `dmesg`; update the NIC firmware (mlxfwmanager) and rdma-core";
	case XT_VCHK_FLOW:
		return "mlx4: options mlx4_core log_num_mgm_entry_size=-1 in /etc/modprobe.d, reload the driver; "
		       "mlx5: update the firmware; an SR-IOV VF needs `ip link set <pf> vf <n> trust on`";
	case XT_VCHK_DONT_TRAP:
		return "not required: without it ARP stays with the kernel; use the interface's own address, "
		       "or `ip neigh add proxy <engine address> dev <if>` for an address of the engine's own";
	case XT_VCHK_CSUM:
		return "not required: checksums are then computed in software";
	case XT_VCHK_TSO:
		return "not required: the engine sends MTU-sized segments";
	case XT_VCHK_INLINE:
		return "not required: small frames are copied into the registered pool";
	default:
		return "";
	}
}

static void usage(FILE *f, int status)
{
	fprintf(f, "usage: xtcp-verbs-check [-l LIBRARY] [-q] IFNAME\n");
	if (f == stdout)
		fprintf(f,
			"Is this host ready for XTCP_NIC=verbs on IFNAME?  Checks libibverbs (loaded as\n"
			"libxtcp.so loads it), the interface, the RDMA device behind it, access to it,\n"
			"the port, CAP_NET_RAW, the locked-memory limit, a raw packet QP, flow rules,\n"
			"checksum offload, TSO and inline sends; says what is missing and how to fix it.\n"
			"\n"
			"  -l LIBRARY   the libibverbs to load (default: $XTCP_IBVERBS_LIB, else\n"
			"               libibverbs.so.1)\n"
			"  -q           print only problems\n"
			"  -h, --help   this help\n"
			"\n"
			"Exit status: 0 ready (warnings: works, slower or with less), 1 something\n"
			"required is missing, 2 usage.  See xtcp-verbs-check(1).\n");
	exit(status);
}

int main(int argc, char **argv)
{
	static const char *const tag[] = { "skip", " ok ", "warn", "FAIL" };
	struct xt_verbs_probe p;
	const char *lib = NULL, *ifname;
	int opt, quiet = 0, nfail, nwarn = 0;

	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help"))
			usage(stdout, 0);
	while ((opt = getopt(argc, argv, "l:qh")) != -1) {
		switch (opt) {
		case 'l': lib = optarg; break;
		case 'q': quiet = 1; break;
		case 'h': usage(stdout, 0); break;
		default: usage(stderr, 2);
		}
	}
	if (optind != argc - 1)
		usage(stderr, 2);
	ifname = argv[optind];
	nfail = xt_verbs_probe(ifname, lib, &p);
	if (nfail < 0) {
		fprintf(stderr, "xtcp-verbs-check: probe failed\n");
		return 1;
	}
	printf("xtcp-verbs-check: %s (library %s)\n", ifname, p.lib);
	for (int c = 0; c < XT_VCHK_COUNT; c++) {
		int s = p.status[c];

		if (s == XT_VCHK_WARN)
			nwarn++;
		if (quiet && s != XT_VCHK_FAIL)
			continue;
		if (s == XT_VCHK_SKIP) {
			printf("  [skip] %s: not checked (an earlier check failed)\n", xt_verbs_check_name(c));
			continue;
		}
		printf("  [%s] %s: %s\n", tag[s], xt_verbs_check_name(c), p.detail[c]);
		if (s == XT_VCHK_FAIL || s == XT_VCHK_WARN)
			printf("         fix: %s\n", fix_for(c, p.err[c], ifname, p.device));
	}
	if (nfail)
		printf("result: NOT READY: %d problem%s to fix (see fix: above)\n", nfail, nfail == 1 ? "" : "s");
	else
		printf("result: ready for XTCP_NIC=verbs on %s (%s port %u)%s\n", ifname, p.device, p.port,
		       nwarn ? ", with the warnings above" : "");
	return nfail ? 1 : 0;
}
