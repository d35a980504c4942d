/* Version of libxtcp.so (exported, see libxtcp.map). */
#ifndef XTCP_VERSION
#define XTCP_VERSION "0.1.0-dev"
#endif

__attribute__((visibility("default"))) const char *xtcp_version(void);

const char *xtcp_version(void)
{
	return XTCP_VERSION;
}
