/*
 * bcryptprimitives.dll for Wine 8.0, which has none: Rust's std imports ProcessPrng from it since Rust
 * 1.78 (its random source for HashMap keys), so under Debian 12's Wine every Rust program stops at start
 * with "bcryptprimitives.dll not found". ProcessPrng fills a buffer with random bytes and cannot fail;
 * here it asks advapi32's RtlGenRandom (exported as SystemFunction036), which Wine has always had.
 *
 * Built by .ci/wine-setup with Debian's gcc-mingw-w64-x86-64 and put in the Wine prefix's system32.
 * For Wine only: real Windows (10 and later) ships this DLL itself.
 */
#include <windows.h>

/* RtlGenRandom: declared here, since only ntsecapi.h names it, and under its exported name. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    /* RtlGenRandom takes a ULONG length: a larger request is filled in pieces. */
    while (length > 0) {
        ULONG piece = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, piece)) {
            /* ProcessPrng is documented never to fail; std aborts if it returns FALSE, which is the
               honest outcome if the system cannot give random bytes at all. */
            return FALSE;
        }
        data += piece;
        length -= piece;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
