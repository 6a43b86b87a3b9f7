# Checks that LIBRARY exports exactly the functions HEADER declares with
# KILN_API: nothing hidden by mistake, nothing internal leaking out.
# Usage: cmake -DNM=nm -DLIBRARY=libkiln_runtime.so -DHEADER=api.h -P this.
foreach(var NM LIBRARY HEADER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_exports.cmake: -D${var}=... is required")
  endif()
endforeach()

file(READ "${HEADER}" header)
string(REGEX REPLACE "//[^\n]*" "" header "${header}")
string(REGEX MATCHALL "KILN_API[^;]*" declarations "${header}")
set(declared)
foreach(declaration IN LISTS declarations)
  string(REGEX MATCH "kiln_[a-z0-9_]+[ \t\n]*\\(" name "${declaration}")
  string(REGEX REPLACE "[ \t\n]*\\($" "" name "${name}")
  if(name)
    list(APPEND declared "${name}")
  endif()
endforeach()
list(SORT declared)
list(LENGTH declared declared_count)
if(declared_count EQUAL 0)
  message(FATAL_ERROR "found no KILN_API declarations in ${HEADER}")
endif()

execute_process(COMMAND "${NM}" -D --defined-only "${LIBRARY}"
  OUTPUT_VARIABLE symbols RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${NM} -D --defined-only ${LIBRARY} failed: ${result}")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${symbols}")
set(exported)
foreach(line IN LISTS lines)
  # "<address> <type> <name>[@version]"
  if(line MATCHES "^[0-9a-fA-F]* *[A-Za-z] ([^@ ]+)")
    list(APPEND exported "${CMAKE_MATCH_1}")
  endif()
endforeach()
list(SORT exported)

set(missing ${declared})
if(exported)
  list(REMOVE_ITEM missing ${exported})
endif()
set(extra ${exported})
list(REMOVE_ITEM extra ${declared})
if(missing OR extra)
  message(FATAL_ERROR "exports of ${LIBRARY} do not match ${HEADER}\n"
                      "  declared but not exported: ${missing}\n"
                      "  exported but not declared: ${extra}")
endif()
message(STATUS "${declared_count} exported functions match ${HEADER}")
