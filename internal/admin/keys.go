package admin

import (
	"context"
	"io"

	"github.com/phantom-perimeter/phantom/internal/identity"
)

// Sealing key statuses, as `phantom keys list` shows them.
const (
	// KeyCurrent: seals new session tokens (the newest current key does) and opens them.
	KeyCurrent = "Current"
	// KeyRetiring: rotated out; opens the tokens it sealed until RetireAfter.
	KeyRetiring = "Retiring"
	// KeyRetired: past RetireAfter; opens nothing.
	KeyRetired = "Retired"
)

// SealingKey describes a token-sealing key. It has no field for the key bytes, so no
// listing can print them.
type SealingKey struct {
	KeyId       string
	Status      string
	CreateDate  Time
	RetireAfter *Time `json:",omitempty"`
}

// ListKeysOutput is `phantom keys list`'s output, newest key first.
type ListKeysOutput struct {
	SealingKeys []SealingKey
}

func (o *ListKeysOutput) writeText(w io.Writer) error {
	for _, k := range o.SealingKeys {
		retire := ""
		if k.RetireAfter != nil {
			retire = k.RetireAfter.String()
		}
		if err := textLine(w, "SealingKeys", k.CreateDate.String(), k.KeyId, retire, k.Status); err != nil {
			return err
		}
	}
	return nil
}

// RotateKeysOutput is `phantom keys rotate`'s output: the new key's id and every key.
type RotateKeysOutput struct {
	KeyId       string
	SealingKeys []SealingKey
}

func (o *RotateKeysOutput) writeText(w io.Writer) error {
	if err := textLine(w, "KeyId", o.KeyId); err != nil {
		return err
	}
	return (&ListKeysOutput{o.SealingKeys}).writeText(w)
}

// ListKeys lists the token-sealing keys (ids and times, never key material).
func (a *Admin) ListKeys(ctx context.Context) (*ListKeysOutput, error) {
	keys, err := a.store.ListSealingKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := a.now()
	out := &ListKeysOutput{SealingKeys: make([]SealingKey, 0, len(keys))}
	for _, k := range keys {
		clear(k.Key)
		sk := SealingKey{KeyId: k.ID, Status: KeyCurrent, CreateDate: Time(k.CreatedAt)}
		if !k.RetireAfter.IsZero() {
			t := Time(k.RetireAfter)
			sk.RetireAfter = &t
			sk.Status = KeyRetiring
			if !now.Before(k.RetireAfter) {
				sk.Status = KeyRetired
			}
		}
		out.SealingKeys = append(out.SealingKeys, sk)
	}
	return out, nil
}

// RotateKeys adds a new current sealing key; the previous current keys keep opening the
// tokens they sealed until the longest session they can have sealed has expired
// (identity.DefaultMaxSessionDuration after now). With no key yet it creates the first.
// With inToken, the new key's signing key is made in that PKCS#11 token (STS then needs
// it: phantom sts --pkcs11-keys token-signing); without, a current key that signs in a
// token is not replaced.
func (a *Admin) RotateKeys(ctx context.Context, inToken identity.TokenSigningKeys) (*RotateKeysOutput, error) {
	id, err := a.ids.RotateSealingKeyIn(ctx, inToken)
	if err != nil {
		return nil, err
	}
	list, err := a.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	return &RotateKeysOutput{KeyId: id, SealingKeys: list.SealingKeys}, nil
}
