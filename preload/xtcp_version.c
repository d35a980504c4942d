/* Version of libxtcp.so.
 *
 * For now the only symbol the library exports (see libxtcp.map): the
 * interposed libc functions arrive with the LD_PRELOAD shim.
 */
#ifndef XTCP_VERSION
#define XTCP_VERSION "0.1.0-dev"
#endif

__attribute__((visibility("default"))) const char *xtcp_version(void);

const char *xtcp_version(void)
{
	return XTCP_VERSION;
}
