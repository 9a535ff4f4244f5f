package admin

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/phantom-perimeter/phantom/internal/mfa"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// IAM error codes of the MFA actions (IAM API Reference: CreateVirtualMFADevice,
// EnableMFADevice, DeleteVirtualMFADevice, ResyncMFADevice).
const (
	CodeEntityAlreadyExists       = "EntityAlreadyExists"
	CodeInvalidAuthenticationCode = "InvalidAuthenticationCode"
	CodeDeleteConflict            = "DeleteConflict"
)

// MFADevicesPerUser is IAM's quota of MFA devices in use per user ("IAM and AWS STS
// quotas").
const MFADevicesPerUser = 8

// VirtualMFADevice is a device as CreateVirtualMFADevice returns it. The seed is not a
// field: it goes to the file the caller names, never to standard output.
type VirtualMFADevice struct {
	SerialNumber string
}

// CreateVirtualMFADeviceOutput is `aws iam create-virtual-mfa-device`'s output; Seed is
// the device's secret, for the caller to write to its --outfile and nowhere else.
type CreateVirtualMFADeviceOutput struct {
	VirtualMFADevice VirtualMFADevice
	Seed             []byte `json:"-"`
}

func (o *CreateVirtualMFADeviceOutput) writeText(w io.Writer) error {
	return textLine(w, "VirtualMFADevice", o.VirtualMFADevice.SerialNumber)
}

// MFADevice is an enabled device as ListMFADevices shows it.
type MFADevice struct {
	UserName     string
	SerialNumber string
	EnableDate   Time
}

// ListMFADevicesOutput is `aws iam list-mfa-devices`'s output.
type ListMFADevicesOutput struct {
	MFADevices []MFADevice
}

func (o *ListMFADevicesOutput) writeText(w io.Writer) error {
	for _, d := range o.MFADevices {
		if err := textLine(w, "MFADevices", d.EnableDate.String(), d.SerialNumber, d.UserName); err != nil {
			return err
		}
	}
	return nil
}

// CreateVirtualMFADevice creates a device named name under path (default /) and returns
// its serial number and seed. The device authenticates nobody until EnableMFADevice
// assigns it to a user with two consecutive codes.
func (a *Admin) CreateVirtualMFADevice(ctx context.Context, path, name string) (*CreateVirtualMFADeviceOutput, error) {
	serial, err := mfa.SerialNumber(a.spec.Account, path, name)
	switch {
	case errors.Is(err, mfa.ErrName):
		return nil, validation(name, "virtualMFADeviceName", `Member must satisfy regular expression pattern: [\w+=,.@-]+ and have length between 1 and 226`)
	case err != nil:
		return nil, validation(path, "path", `Member must satisfy regular expression pattern: (\u002F)|(\u002F[\u0021-\u007E]+\u002F)`)
	}
	seed, err := mfa.NewSeed(a.rand)
	if err != nil {
		return nil, err
	}
	err = a.store.PutMFADevice(ctx, store.MFADevice{Serial: serial, Seed: seed, CreatedAt: a.now()})
	if errors.Is(err, store.ErrExists) {
		return nil, &Error{CodeEntityAlreadyExists, "MFADevice entity at the same path and name already exists."}
	}
	if err != nil {
		return nil, err
	}
	return &CreateVirtualMFADeviceOutput{VirtualMFADevice: VirtualMFADevice{SerialNumber: serial}, Seed: seed}, nil
}

// EnableMFADevice assigns a virtual device to a user of the spec, proven by two
// consecutive codes from it (RFC 6238 codes of two following steps).
func (a *Admin) EnableMFADevice(ctx context.Context, user, serial, code1, code2 string) error {
	d, err := a.userDevice(ctx, user, serial, false)
	if err != nil {
		return err
	}
	if d.User != "" {
		return &Error{CodeEntityAlreadyExists, "MFA device is already in use."}
	}
	in, err := a.store.ListMFADevices(ctx, user)
	if err != nil {
		return err
	}
	if len(in) >= MFADevicesPerUser {
		return &Error{CodeLimitExceeded, fmt.Sprintf("Cannot exceed quota for MFADevicesPerUser: %d", MFADevicesPerUser)}
	}
	step, ok := mfa.Consecutive(d.Seed, code1, code2, a.now())
	if !ok {
		return &Error{CodeInvalidAuthenticationCode, "Authentication code for device is not valid."}
	}
	err = a.store.EnableMFADevice(ctx, serial, user, step, a.now())
	if errors.Is(err, store.ErrConflict) {
		return &Error{CodeEntityAlreadyExists, "MFA device is already in use."}
	}
	return err
}

// ResyncMFADevice clears a locked or drifted device with two consecutive fresh codes.
func (a *Admin) ResyncMFADevice(ctx context.Context, user, serial, code1, code2 string) error {
	d, err := a.userDevice(ctx, user, serial, true)
	if err != nil {
		return err
	}
	step, ok := mfa.Consecutive(d.Seed, code1, code2, a.now())
	if !ok || step <= d.LastStep {
		return &Error{CodeInvalidAuthenticationCode, "Authentication code for device is not valid."}
	}
	return a.store.ResyncMFADevice(ctx, serial, user, step)
}

// DeactivateMFADevice takes a device from its user; it can be enabled again, for the same
// or another user, or deleted.
func (a *Admin) DeactivateMFADevice(ctx context.Context, user, serial string) error {
	if _, err := a.userDevice(ctx, user, serial, true); err != nil {
		return err
	}
	err := a.store.DeactivateMFADevice(ctx, serial, user)
	if errors.Is(err, store.ErrNotFound) {
		return noSuchDevice(serial)
	}
	return err
}

// DeleteVirtualMFADevice deletes a device that is not enabled (IAM: deactivate it first).
func (a *Admin) DeleteVirtualMFADevice(ctx context.Context, serial string) error {
	if _, err := mfa.ParseSerial(a.spec.Account, serial); err != nil {
		return serialInvalid(serial)
	}
	err := a.store.DeleteMFADevice(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return noSuchDevice(serial)
	case errors.Is(err, store.ErrConflict):
		return &Error{CodeDeleteConflict, "MFA device is still in use: deactivate it first."}
	}
	return err
}

// ListMFADevices lists the devices enabled for a user.
func (a *Admin) ListMFADevices(ctx context.Context, user string) (*ListMFADevicesOutput, error) {
	if err := checkUserName(user); err != nil {
		return nil, err
	}
	ds, err := a.store.ListMFADevices(ctx, user)
	if err != nil {
		return nil, err
	}
	if _, ok := a.spec.User(user); !ok && len(ds) == 0 {
		return nil, noSuchUser(user)
	}
	out := &ListMFADevicesOutput{MFADevices: []MFADevice{}}
	for _, d := range ds {
		out.MFADevices = append(out.MFADevices, MFADevice{UserName: d.User, SerialNumber: d.Serial, EnableDate: Time(d.EnabledAt)})
	}
	return out, nil
}

// userDevice checks the names and returns the device; enabled requires it to be enabled
// for user.
func (a *Admin) userDevice(ctx context.Context, user, serial string, enabled bool) (store.MFADevice, error) {
	if err := checkUserName(user); err != nil {
		return store.MFADevice{}, err
	}
	if _, err := mfa.ParseSerial(a.spec.Account, serial); err != nil {
		return store.MFADevice{}, serialInvalid(serial)
	}
	if _, ok := a.spec.User(user); !ok && !enabled {
		return store.MFADevice{}, noSuchUser(user)
	}
	d, err := a.store.GetMFADevice(ctx, serial)
	if errors.Is(err, store.ErrNotFound) || (err == nil && enabled && d.User != user) {
		return store.MFADevice{}, noSuchDevice(serial)
	}
	return d, err
}

func noSuchDevice(serial string) error {
	return &Error{CodeNoSuchEntity, fmt.Sprintf("MFA Device with serial number %s does not exist.", serial)}
}

func serialInvalid(serial string) error {
	return validation(serial, "serialNumber", "Member must be the ARN of a virtual MFA device of this account: arn:aws:iam::ACCOUNT:mfa/NAME")
}
