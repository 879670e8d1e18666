/* core/kconfig.h: IS_ENABLED() for the generated build/config.h.
 *
 * genconfig defines a bool symbol as 1 when it is set and leaves it out
 * when it is not; IS_ENABLED(CONFIG_X) turns either into 1 or 0, so code
 * says `if (IS_ENABLED(CONFIG_X))` and both branches are always compiled.
 * The trick is the Linux kernel's include/linux/kconfig.h.
 */
#ifndef VMGATE_CORE_KCONFIG_H
#define VMGATE_CORE_KCONFIG_H

#include "config.h"

#define KCONFIG_ARG_PLACEHOLDER_1 0,
#define KCONFIG_TAKE_SECOND(ignored, val, ...) val
#define KCONFIG_IS_DEFINED3(arg1_or_junk) KCONFIG_TAKE_SECOND(arg1_or_junk 1, 0, 0)
#define KCONFIG_IS_DEFINED2(val) KCONFIG_IS_DEFINED3(KCONFIG_ARG_PLACEHOLDER_##val)
#define IS_ENABLED(option) KCONFIG_IS_DEFINED2(option)

#endif
