package hsm

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/miekg/pkcs11"
)

// Ed25519 keys in a token (PKCS#11 v3.0 §2.3.6, "Edwards Elliptic curve"). crypto11 has no
// EdDSA, so they go through github.com/miekg/pkcs11, the library crypto11 wraps, on
// sessions of their own. Its v1.1.2 names no EdDSA constants: these are v3.0's values.
const (
	ckkECEdwards           = 0x00000040 // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen = 0x00001055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA               = 0x00001057 // CKM_EDDSA
)

// The CKA_LABEL of the Ed25519 keys Phantom makes in a token: the keys that sign session
// tokens (STS) and audit writers' keys (one per chain: AuditLabel + chain).
const (
	TokenSigningLabel = "phantom-token-signing"
	AuditLabel        = "phantom-audit/"
)

// ed25519Params is CKA_EC_PARAMS of an Ed25519 key: the DER of id-Ed25519 (RFC 8410 §3),
// which PKCS#11 v3.0 accepts besides the curve's printable name.
var ed25519Params = mustMarshal(asn1.ObjectIdentifier{1, 3, 101, 112})

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// maxEdSessions bounds the sessions Ed25519 signing keeps open: a session does one
// operation at a time (PKCS#11 v3.0 §5.6), so concurrent signers each take one.
const maxEdSessions = 4

// edSessions are sessions on the token for CKM_EDDSA, opened on first use and reused.
type edSessions struct {
	mod  *pkcs11.Ctx
	slot uint
	pin  string
	idle chan pkcs11.SessionHandle // sessions not in use
	open chan struct{}             // one token per session open, bounding them
}

// openEdSessions loads the module a second time (the dynamic loader shares it with
// crypto11, which initialized it already) and finds the slot of cfg's token.
func openEdSessions(cfg Config) (*edSessions, error) {
	mod := pkcs11.New(cfg.Module)
	if mod == nil {
		return nil, fmt.Errorf("pkcs11: load %s", cfg.Module)
	}
	if err := mod.Initialize(); err != nil && !isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		mod.Destroy()
		return nil, fmt.Errorf("pkcs11: initialize %s: %w", cfg.Module, err)
	}
	slots, err := mod.GetSlotList(true)
	if err != nil {
		mod.Destroy()
		return nil, fmt.Errorf("pkcs11: list slots: %w", err)
	}
	for _, s := range slots {
		info, err := mod.GetTokenInfo(s)
		if err == nil && info.Label == cfg.TokenLabel {
			return &edSessions{mod: mod, slot: s, pin: cfg.PIN, idle: make(chan pkcs11.SessionHandle, maxEdSessions), open: make(chan struct{}, maxEdSessions)}, nil
		}
	}
	mod.Destroy()
	return nil, fmt.Errorf("pkcs11: no token labelled %q", cfg.TokenLabel)
}

func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

// get returns an idle session, or opens one (logged in: login is per token, so a
// session opened after crypto11's login is already logged in) while fewer than
// maxEdSessions are open, or waits for one.
func (s *edSessions) get(ctx context.Context) (pkcs11.SessionHandle, error) {
	select {
	case h := <-s.idle:
		return h, nil
	default:
	}
	select {
	case h := <-s.idle:
		return h, nil
	case s.open <- struct{}{}:
		h, err := s.mod.OpenSession(s.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			<-s.open
			return 0, fmt.Errorf("pkcs11: open session: %w", err)
		}
		if err := s.mod.Login(h, pkcs11.CKU_USER, s.pin); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
			s.mod.CloseSession(h)
			<-s.open
			return 0, fmt.Errorf("pkcs11: log in: %w", err)
		}
		return h, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// put returns a session to the pool; a session whose operation failed is closed instead
// (it may be left mid-operation).
func (s *edSessions) put(h pkcs11.SessionHandle, failed bool) {
	if failed {
		s.mod.CloseSession(h)
		<-s.open
		return
	}
	s.idle <- h
}

// close closes the idle sessions and unloads the module (crypto11 finalizes it).
func (s *edSessions) close() {
	for {
		select {
		case h := <-s.idle:
			s.mod.CloseSession(h)
		default:
			s.mod.Destroy()
			return
		}
	}
}

// with runs f on a session.
func (s *edSessions) with(ctx context.Context, f func(h pkcs11.SessionHandle) error) error {
	h, err := s.get(ctx)
	if err != nil {
		return err
	}
	err = f(h)
	s.put(h, err != nil)
	return err
}

// Ed25519Key is an Ed25519 key pair whose private half is in the token, made there
// non-extractable and sensitive. It is a crypto.Signer of pure Ed25519 (RFC 8032 §5.1,
// CKM_EDDSA without parameters): the callers put their own domain separation in the
// message. SoftHSM2 2.6 ignores CK_EDDSA_PARAMS (asked for Ed25519ctx or Ed25519ph it
// signs pure Ed25519), so Sign refuses either rather than hand one out as the other, and
// checks every signature the token returns before returning it.
type Ed25519Key struct {
	s     *edSessions
	label string
	priv  pkcs11.ObjectHandle
	pubH  pkcs11.ObjectHandle
	pub   ed25519.PublicKey
}

// Public returns the ed25519.PublicKey.
func (k *Ed25519Key) Public() crypto.PublicKey { return k.pub }

// Label is the key's CKA_LABEL.
func (k *Ed25519Key) Label() string { return k.label }

// Sign signs msg with pure Ed25519 in the token. opts must ask for no hash and no
// context (crypto.Hash(0), or ed25519.Options with neither).
func (k *Ed25519Key) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != 0 {
		return nil, errors.New("pkcs11 ed25519: the token signs pure Ed25519 only (no pre-hash)")
	}
	if o, ok := opts.(*ed25519.Options); ok && (o.Context != "" || o.Hash != 0) {
		return nil, errors.New("pkcs11 ed25519: the token signs pure Ed25519 only (no Ed25519ctx/Ed25519ph)")
	}
	var sig []byte
	err := k.s.with(context.Background(), func(h pkcs11.SessionHandle) error {
		if err := k.s.mod.SignInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, k.priv); err != nil {
			return fmt.Errorf("pkcs11 ed25519: sign init: %w", err)
		}
		var err error
		if sig, err = k.s.mod.Sign(h, msg); err != nil {
			return fmt.Errorf("pkcs11 ed25519: sign: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(k.pub, msg, sig) {
		return nil, fmt.Errorf("pkcs11 ed25519: the token's signature does not verify as pure Ed25519 under key %q", k.label)
	}
	return sig, nil
}

// Destroy deletes the key pair from the token.
func (k *Ed25519Key) Destroy() error {
	return k.s.with(context.Background(), func(h pkcs11.SessionHandle) error {
		if err := k.s.mod.DestroyObject(h, k.priv); err != nil {
			return fmt.Errorf("pkcs11 ed25519: destroy %s private key: %w", k.label, err)
		}
		if err := k.s.mod.DestroyObject(h, k.pubH); err != nil {
			return fmt.Errorf("pkcs11 ed25519: destroy %s public key: %w", k.label, err)
		}
		return nil
	})
}

// NewEd25519Key makes an Ed25519 key pair labelled label in the token, with a random
// CKA_ID; its private half is CKA_SENSITIVE, not CKA_EXTRACTABLE, and usable only to sign.
func (t *Token) NewEd25519Key(ctx context.Context, label string) (*Ed25519Key, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	var pubH pkcs11.ObjectHandle
	err := t.ed.with(ctx, func(h pkcs11.SessionHandle) error {
		pubT := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ed25519Params),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
		privT := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
		var err error
		pubH, _, err = t.ed.mod.GenerateKeyPair(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pubT, privT)
		if err != nil {
			return fmt.Errorf("pkcs11: generate %s key: %w", label, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var k *Ed25519Key
	err = t.ed.with(ctx, func(h pkcs11.SessionHandle) error {
		pub, _, err := t.edPublic(h, pubH)
		if err != nil {
			return err
		}
		k, err = t.edPrivate(h, label, id, pubH, pub)
		return err
	})
	return k, err
}

// FindEd25519Key finds the token's key pair labelled label whose public key is pub. A key
// whose private half could leave the token (CKA_EXTRACTABLE, or not CKA_SENSITIVE) is
// refused: Phantom never made it.
func (t *Token) FindEd25519Key(ctx context.Context, label string, pub ed25519.PublicKey) (*Ed25519Key, error) {
	var k *Ed25519Key
	err := t.ed.with(ctx, func(h pkcs11.SessionHandle) error {
		pubs, err := findObjects(t.ed.mod, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
		if err != nil {
			return fmt.Errorf("pkcs11: find %s keys: %w", label, err)
		}
		for _, ph := range pubs {
			got, id, err := t.edPublic(h, ph)
			if err != nil {
				return err
			}
			if got.Equal(pub) {
				k, err = t.edPrivate(h, label, id, ph, got)
				return err
			}
		}
		return fmt.Errorf("pkcs11: the token holds no %s key %x (%d %s keys there)", label, []byte(pub), len(pubs), label)
	})
	return k, err
}

// edPublic reads a public key object's key and CKA_ID.
func (t *Token) edPublic(h pkcs11.SessionHandle, o pkcs11.ObjectHandle) (ed25519.PublicKey, []byte, error) {
	attrs, err := t.ed.mod.GetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
	if err != nil {
		return nil, nil, fmt.Errorf("pkcs11: read an ed25519 public key: %w", err)
	}
	pub, err := ecPoint(attrs[0].Value)
	if err != nil {
		return nil, nil, err
	}
	return pub, attrs[1].Value, nil
}

// ecPoint decodes CKA_EC_POINT of an Ed25519 key: PKCS#11 v3.0 says a DER OCTET STRING
// of the 32-byte key (RFC 8410's encoding); some tokens give the 32 bytes bare.
func ecPoint(v []byte) (ed25519.PublicKey, error) {
	if len(v) == ed25519.PublicKeySize {
		return ed25519.PublicKey(v), nil
	}
	var raw []byte
	if rest, err := asn1.Unmarshal(v, &raw); err != nil || len(rest) != 0 || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("pkcs11: CKA_EC_POINT of %d bytes is not an Ed25519 key", len(v))
	}
	return ed25519.PublicKey(raw), nil
}

// edPrivate finds the private key labelled label with CKA_ID id and checks it cannot
// leave the token.
func (t *Token) edPrivate(h pkcs11.SessionHandle, label string, id []byte, pubH pkcs11.ObjectHandle, pub ed25519.PublicKey) (*Ed25519Key, error) {
	privs, err := findObjects(t.ed.mod, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: find %s private key: %w", label, err)
	}
	if len(privs) != 1 {
		return nil, fmt.Errorf("pkcs11: %d %s private keys with id %x, want 1", len(privs), label, id)
	}
	attrs, err := t.ed.mod.GetAttributeValue(h, privs[0], []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: read %s private key attributes: %w", label, err)
	}
	for i, want := range []bool{true, false, true, true} {
		if got := len(attrs[i].Value) == 1 && attrs[i].Value[0] != 0; got != want {
			return nil, fmt.Errorf("pkcs11: %s private key %x could have left the token (attribute %#x is %v): refused", label, id, attrs[i].Type, got)
		}
	}
	return &Ed25519Key{s: t.ed, label: label, priv: privs[0], pubH: pubH, pub: pub}, nil
}

// findObjects lists the objects matching template (at most 64: a label has few keys).
func findObjects(mod *pkcs11.Ctx, h pkcs11.SessionHandle, template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := mod.FindObjectsInit(h, template); err != nil {
		return nil, err
	}
	objs, _, err := mod.FindObjects(h, 64)
	if ferr := mod.FindObjectsFinal(h); err == nil {
		err = ferr
	}
	return objs, err
}

// NewTokenSigningKey makes a session-token signing key in the token (identity's
// TokenSigningKeys).
func (t *Token) NewTokenSigningKey(ctx context.Context) (crypto.Signer, error) {
	return t.NewEd25519Key(ctx, TokenSigningLabel)
}

// TokenSigningKey finds the token's session-token signing key pub (identity's
// TokenSigningKeys).
func (t *Token) TokenSigningKey(ctx context.Context, pub ed25519.PublicKey) (crypto.Signer, error) {
	return t.FindEd25519Key(ctx, TokenSigningLabel, pub)
}

// NewAuditKey makes the key of chain's audit writer in the token. The caller destroys it
// (Ed25519Key.Destroy) when it gives the chain a new one: what it signed stays verifiable
// by its certificate.
func (t *Token) NewAuditKey(ctx context.Context, chain string) (crypto.Signer, error) {
	return t.NewEd25519Key(ctx, AuditLabel+chain)
}
