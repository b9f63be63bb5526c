# Install layout (GNUInstallDirs) shared by `cmake --install` and the Debian packages (debian/),
# the library's exported symbols, and the build-tree RUNPATH. Included at the end of the top
# CMakeLists.txt, once every target exists. docs/abi.md explains the ABI part.

include(CMakePackageConfigHelpers)

# Only the public p11s_* functions leave libp11smime.so, each with the version node P11SMIME_0.
# -fvisibility=hidden (C_VISIBILITY_PRESET) already hides the rest; the version script adds the
# symbol versions a Debian symbols file and the dynamic linker use, and hides what a static
# dependency could export. tests/abi checks the result against debian/libp11smime0.symbols.
set(P11S_VERSION_SCRIPT ${PROJECT_SOURCE_DIR}/src/lib/libp11smime.map)
target_link_options(p11smime PRIVATE "LINKER:--version-script=${P11S_VERSION_SCRIPT}")
# Every symbol the library needs comes from a library it names (DT_NEEDED), so that a program
# linking -lp11smime alone loads. Not with sanitizers: their runtime lives in the executable.
if(NOT P11S_SANITIZE)
	target_link_options(p11smime PRIVATE "LINKER:--no-undefined")
endif()
set_property(TARGET p11smime APPEND PROPERTY LINK_DEPENDS ${P11S_VERSION_SCRIPT})

# Installed programs: CMake links them with the build-tree RUNPATH plus a trailing ':' (room for
# the install-time rewrite), and an empty RUNPATH entry means the current directory to ld.so.
# So the build tree's RUNPATH is given by hand (the directory of libp11smime.so, nothing else:
# every other library comes from the system's default paths) and removed from the installed
# copy, which finds libp11smime.so.0 in ${CMAKE_INSTALL_LIBDIR} like any system library.
function(p11s_install_program target destination)
	set_target_properties(${target} PROPERTIES SKIP_BUILD_RPATH ON)
	target_link_options(${target} PRIVATE "LINKER:-rpath,$<TARGET_FILE_DIR:p11smime>")
	install(TARGETS ${target} RUNTIME DESTINATION ${destination})
	install(CODE "file(RPATH_REMOVE FILE
		\"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${destination}/$<TARGET_FILE_NAME:${target}>\")")
endfunction()

# The library, its headers, pkg-config file and CMake package configuration (libp11smime-dev).
install(TARGETS p11smime LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/p11smime DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# pkg-config paths: relative to ${prefix} when they are below it (relocatable), else absolute.
foreach(dir LIBDIR INCLUDEDIR)
	if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
		set(P11S_PC_${dir} "${CMAKE_INSTALL_${dir}}")
	else()
		set(P11S_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
	endif()
endforeach()
configure_file(cmake/p11smime.pc.in p11smime.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/p11smime.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
set(P11S_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/p11smime)
configure_package_config_file(cmake/p11smimeConfig.cmake.in p11smimeConfig.cmake
	INSTALL_DESTINATION ${P11S_CMAKEDIR} PATH_VARS CMAKE_INSTALL_LIBDIR CMAKE_INSTALL_INCLUDEDIR)
# SameMajorVersion: 0.x releases keep the SONAME libp11smime.so.0 (docs/abi.md).
write_basic_package_version_file(p11smimeConfigVersion.cmake COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/p11smimeConfig.cmake
	${PROJECT_BINARY_DIR}/p11smimeConfigVersion.cmake DESTINATION ${P11S_CMAKEDIR})

# The programs: the tool (which is also the agent), git's signer, the milter.
p11s_install_program(p11smime-cli ${CMAKE_INSTALL_BINDIR})
p11s_install_program(p11smime-gpg ${CMAKE_INSTALL_BINDIR})
p11s_install_program(p11smime-gateway ${CMAKE_INSTALL_SBINDIR})

# Manual pages, by section.
foreach(section 1 5 8)
	file(GLOB P11S_MAN_PAGES ${PROJECT_SOURCE_DIR}/docs/*.${section})
	install(FILES ${P11S_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()

# The tool's shell completion and the mail-client snippets (docs/mail-clients.md:
# "source /usr/share/p11smime/neomutt/smime.rc").
install(FILES contrib/bash-completion/p11smime
	DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES contrib/neomutt/smime.rc DESTINATION ${CMAKE_INSTALL_DATADIR}/p11smime/neomutt)
install(FILES contrib/mutt/smime.rc DESTINATION ${CMAKE_INSTALL_DATADIR}/p11smime/mutt)

# The gateway's system integration: the unit, its user (sysusers.d), its runtime directory
# (tmpfiles.d) and a commented configuration. Debian's units live in /lib/systemd/system
# (debian/rules sets P11S_SYSTEMD_UNITDIR); relative to the prefix by default so that
# `cmake --install --prefix DIR` writes nothing outside DIR.
set(P11S_SYSTEMD_UNITDIR lib/systemd/system CACHE STRING
	"Where p11smime-gateway.service is installed (relative: below the prefix)")
set(P11S_SYSUSERSDIR lib/sysusers.d CACHE STRING
	"Where the sysusers.d entry of the p11smime user is installed")
set(P11S_TMPFILESDIR lib/tmpfiles.d CACHE STRING
	"Where the tmpfiles.d entry of /run/p11smime is installed")
install(FILES docs/p11smime-gateway.service DESTINATION ${P11S_SYSTEMD_UNITDIR})
install(FILES contrib/gateway/sysusers.conf DESTINATION ${P11S_SYSUSERSDIR} RENAME p11smime.conf)
install(FILES contrib/gateway/tmpfiles.conf DESTINATION ${P11S_TMPFILESDIR} RENAME p11smime.conf)
# GNUInstallDirs keeps CMAKE_INSTALL_SYSCONFDIR relative ("etc") and maps it to /etc only in its
# FULL_ form when the prefix is /usr; debhelper passes /etc itself.
set(P11S_SYSCONFDIR ${CMAKE_INSTALL_SYSCONFDIR})
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
	set(P11S_SYSCONFDIR ${CMAKE_INSTALL_FULL_SYSCONFDIR})
endif()
install(FILES contrib/gateway/gateway.conf DESTINATION ${P11S_SYSCONFDIR}/p11smime)
