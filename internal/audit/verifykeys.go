package audit

import (
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"io/fs"
	"path"
	"time"
)

// keyring is what verification trusts to have signed digests: pinned keys (any chain),
// keys certified by the perimeter CA for one chain each, and, per chain, the uncertified
// keys its own key files list.
type keyring struct {
	pinned   []ed25519.PublicKey
	verifier SignerVerifier
	byID     map[string]*keyInfo
	// unpinned holds, per chain directory, the keys of its signer.pub (and of its
	// signers.pem when no verifier can check certificates).
	unpinned map[string]map[string]ed25519.PublicKey
}

// keyInfo is a pinned key, or a key a certificate names (certErr when the certificate
// does not verify).
type keyInfo struct {
	pub     ed25519.PublicKey
	pinned  bool
	signer  SignerInfo
	certErr error
}

func newKeyring(fsys fs.FS, chains []chainDir, opts VerifyOptions) *keyring {
	k := &keyring{pinned: opts.PublicKeys, verifier: opts.Signers, byID: map[string]*keyInfo{}, unpinned: map[string]map[string]ed25519.PublicKey{}}
	for _, p := range opts.PublicKeys {
		k.byID[KeyID(p)] = &keyInfo{pub: p, pinned: true}
	}
	var certs [][]byte
	if opts.Anchors != nil {
		for _, s := range opts.Anchors.Signers {
			certs = append(certs, s.Cert)
		}
	}
	for _, c := range chains {
		own := map[string]ed25519.PublicKey{}
		if data, err := fs.ReadFile(fsys, path.Join(c.dir, keyFile)); err == nil {
			keys, _ := ParsePublicKeys(data)
			for _, p := range keys {
				own[KeyID(p)] = p
			}
		}
		if data, err := fs.ReadFile(fsys, path.Join(c.dir, certFile)); err == nil {
			for _, der := range ParseCertificates(data) {
				if k.verifier != nil {
					certs = append(certs, der)
				} else if p := certKey(der); p != nil {
					own[KeyID(p)] = p
				}
			}
		}
		k.unpinned[c.name] = own
	}
	if k.verifier == nil {
		return k
	}
	for _, der := range certs {
		info, err := k.verifier.VerifyAuditSigner(der)
		if err != nil {
			if p := certKey(der); p != nil {
				if _, ok := k.byID[KeyID(p)]; !ok {
					k.byID[KeyID(p)] = &keyInfo{pub: p, certErr: err}
				}
			}
			continue
		}
		if old, ok := k.byID[KeyID(info.Key)]; !ok || old.certErr != nil {
			k.byID[KeyID(info.Key)] = &keyInfo{pub: info.Key, signer: info}
		}
	}
	return k
}

// certKey is the Ed25519 key of a certificate, unverified, or nil.
func certKey(der []byte) ed25519.PublicKey {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	p, _ := c.PublicKey.(ed25519.PublicKey)
	return p
}

// mode names what vouches for the keys: the CA, pins, or nothing.
func (k *keyring) mode() string {
	switch {
	case k.verifier != nil:
		return "certified"
	case len(k.pinned) > 0:
		return "pinned"
	}
	return "unpinned"
}

// trusted reports whether the key with id, certified or pinned, signed body with sig
// for chain at t; why not, when it did not.
func (k *keyring) trusted(id, chain string, body, sig []byte, t time.Time) (ok bool, why Kind, msg string) {
	signed := append([]byte(digestDomain), body...)
	if ki := k.byID[id]; ki != nil {
		switch {
		case !ed25519.Verify(ki.pub, signed, sig):
			return false, BadSignature, fmt.Sprintf("digest signature (key %s) does not verify: the digest was modified or forged", id)
		case ki.pinned:
			return true, "", ""
		case ki.certErr != nil:
			return false, UnknownKey, fmt.Sprintf("signed by key %s, whose certificate the perimeter CA did not issue (%v)", id, ki.certErr)
		case ki.signer.Chain != chain:
			return false, WrongKey, fmt.Sprintf("signed by key %s, which the perimeter CA certified for chain %q, not this one", id, ki.signer.Chain)
		case t.Before(ki.signer.NotBefore) || t.After(ki.signer.NotAfter):
			return false, WrongKey, fmt.Sprintf("signed at %s by key %s, outside its certificate's validity (%s to %s)", t.UTC().Format(time.RFC3339), id,
				ki.signer.NotBefore.UTC().Format(time.RFC3339), ki.signer.NotAfter.UTC().Format(time.RFC3339))
		}
		return true, "", ""
	}
	for _, p := range k.pinned { // a digest whose keyId was altered still verifies
		if ed25519.Verify(p, signed, sig) {
			return true, "", ""
		}
	}
	return false, "", ""
}

// anchorTrusted reports whether a's digest line was signed by a key trusted for a's
// chain. Without any way to check keys (unpinned), anchors are taken as the store holds
// them.
func (k *keyring) anchorTrusted(a *Anchor) bool {
	if ParseAnchor(*a) != nil {
		return false
	}
	if k.mode() == "unpinned" {
		return true
	}
	d, _ := parseDigest([]byte(a.Digest))
	ok, _, _ := k.trusted(d.KeyID, a.Chain, d.Body, d.Sig, d.Time)
	return ok
}

// loadKeys checks the chain's own key files against the pins: a pinned verification
// reports a key file naming a key that is not pinned.
func (v *chainVerifier) loadKeys() {
	own := v.keys.unpinned[v.name]
	if len(v.keys.pinned) > 0 && v.keys.verifier == nil {
		for id := range own {
			if ki := v.keys.byID[id]; ki == nil || !ki.pinned {
				v.problem(Problem{File: keyFile, Kind: KeyReplaced, Message: fmt.Sprintf("the chain's key file names key %s, which is not a pinned key", id)})
			}
		}
		return
	}
	if v.keys.mode() == "unpinned" && len(own) == 0 {
		v.problem(Problem{File: keyFile, Kind: BadSignature, Message: "no usable public key to check digests with: the chain has no signer.pub or signers.pem"})
	}
}

// checkDigest checks who signed d (line line of file) and reports a digest signed by a
// key not trusted for this chain. Pinned, only pinned keys count. Otherwise an
// uncertified key from the chain's own key files is accepted, with a warning, only before
// the chain's first digest signed by a certified key: older chains were signed before
// keys were certified.
func (v *chainVerifier) checkDigest(d *digest, file string, line int) bool {
	ok, why, msg := v.keys.trusted(d.KeyID, v.name, d.Body, d.Sig, d.Time)
	if ok {
		v.certified = true
		return true
	}
	if why != "" {
		v.problem(Problem{File: file, Line: line, Kind: why, Message: msg})
		return false
	}
	if p, found := v.keys.unpinned[v.name][d.KeyID]; found && v.keys.mode() != "pinned" && ed25519.Verify(p, append([]byte(digestDomain), d.Body...), d.Sig) {
		if v.certified {
			v.problem(Problem{File: file, Line: line, Kind: UnknownKey, Message: fmt.Sprintf("signed by key %s, which only the chain's own key files vouch for, after its digests were signed by trusted keys", d.KeyID)})
			return false
		}
		if !v.unpinnedWarned() {
			v.warn(Problem{File: keyFile, Kind: Unpinned, Message: "digests checked against the chain's own key files, which whoever can rewrite the log can replace; give the perimeter CA (--ca) or pin the key (--public-key) to detect that"})
		}
		return true
	}
	if v.keys.mode() == "certified" {
		v.problem(Problem{File: file, Line: line, Kind: UnknownKey, Message: fmt.Sprintf("signed by key %s, which no certificate of the perimeter CA (nor a pinned key) vouches for: the digest was forged", d.KeyID)})
	} else {
		v.problem(Problem{File: file, Line: line, Kind: BadSignature, Message: fmt.Sprintf("digest signature (key %s) does not verify with a trusted key: the digest was modified or forged", d.KeyID)})
	}
	return false
}

// unpinnedWarned reports whether this chain was already warned about unpinned keys.
func (v *chainVerifier) unpinnedWarned() bool {
	for _, w := range v.rep.Warnings {
		if w.Chain == v.name && w.Kind == Unpinned {
			return true
		}
	}
	return false
}
