// Package layering holds the test of the repository's import rules (layering_test.go):
// which packages may import which, so that the layering docs/architecture.md describes
// stays true as the code changes. It has no code of its own.
package layering
