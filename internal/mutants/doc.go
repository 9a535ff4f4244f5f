// Package mutants holds the maintained list of Phantom's security-critical mutants: one
// line of a security check broken at a time (a signature comparison that always passes,
// an explicit deny that no longer wins, ...), each of which some test must notice. It has
// no code outside its test; scripts/mutate runs it (PHANTOM_MUTATE=1), and CI runs
// scripts/mutate.
//
// A mutant names the code it breaks by an exact snippet, not a line number, so edits
// elsewhere in the file do not move it; when the snippet is gone (the check was rewritten),
// the run fails and says so, and the list is brought up to date with the code.
package mutants
