/* SPDX-License-Identifier: MIT */
/*
 * scav_version(): the version of the library a program runs with, which
 * may be newer than the SCAV_VERSION it was compiled against. The string
 * is the Makefile's VERSION (build-version.h, made by the build); the
 * header's numbers are written by hand, so the build checks them here.
 */

#include "build-version.h"
#include "scav.h"

_Static_assert(SCAV_VERSION_MAJOR == SCAV_BUILD_VERSION_MAJOR && SCAV_VERSION_MINOR == SCAV_BUILD_VERSION_MINOR,
               "include/scav.h's SCAV_VERSION_MAJOR/MINOR differ from the Makefile's VERSION: change them together");

const char *scav_version(void) {
        return SCAV_BUILD_VERSION;
}
