#include <gtest/gtest.h>

#include "kernel_harness.h"
