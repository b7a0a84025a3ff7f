// Package packaging holds what the `tollgate` .deb and .rpm are made of
// (the nfpm configuration, the systemd unit, the D-Bus and polkit policies,
// the shipped rules.d files, the maintainer scripts) and, in its tests,
// the checks that the packages build, install, run and purge cleanly.
//
// It has no Go API: nothing may import it. Its tests never install into the
// machine's own root; the installed daemon runs only inside a network
// namespace the tests create.
package packaging
