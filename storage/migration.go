package storage

import (
	"fmt"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
)

// TokenUpdateWithUnlockToken returns the raw TokenUpdate plist with its
// UnlockToken key set to unlockToken. Devices send the UnlockToken only in
// their first TokenUpdate, so a migration source that replays the latest
// TokenUpdate must put it back. A nil unlockToken returns raw unchanged.
func TokenUpdateWithUnlockToken(raw, unlockToken []byte) ([]byte, error) {
	if len(unlockToken) == 0 {
		return raw, nil
	}
	var m map[string]interface{}
	if err := plist.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding stored TokenUpdate: %w", err)
	}
	m["UnlockToken"] = unlockToken
	out, err := plist.MarshalIndent(m, "\t")
	if err != nil {
		return nil, fmt.Errorf("encoding TokenUpdate: %w", err)
	}
	return out, nil
}

// SetBootstrapTokenCheckin builds the raw SetBootstrapToken plist that
// escrows token for the device channel identified by keys.
func SetBootstrapTokenCheckin(keys mdm.Enrollment, token []byte) ([]byte, error) {
	msg := mdm.SetBootstrapToken{
		Enrollment:     keys,
		MessageType:    mdm.MessageType{MessageType: mdm.MessageSetBootstrapToken},
		BootstrapToken: token,
	}
	out, err := plist.MarshalIndent(&msg, "\t")
	if err != nil {
		return nil, fmt.Errorf("encoding SetBootstrapToken: %w", err)
	}
	return out, nil
}
