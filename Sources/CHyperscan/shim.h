// Hyperscan (Debian's libhyperscan-dev): its API imports into Swift as it is.
#include <hs/hs.h>
