package dump

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/servicetest"
)

func TestDumpsRequestsAndAnswers(t *testing.T) {
	cmd := servicetest.NewCommand("CMD-UUID-1", "DeviceInformation")
	next := &servicetest.Recorder{Next: cmd}
	var out bytes.Buffer
	d := New(next, &out)
	r := mdm.NewRequest(context.Background(), nil)

	report := []byte("<plist><dict><key>Status</key><string>Idle</string></dict></plist>")
	got, err := d.CommandAndReportResults(r, &mdm.CommandResults{Status: "Idle", Raw: report})
	if err != nil || got != cmd {
		t.Fatalf("dump changed the answer: %v %v", got, err)
	}
	tu := &mdm.TokenUpdate{}
	tu.Raw.Raw = []byte("TOKENUPDATE-RAW")
	if err := d.TokenUpdate(r, tu); err != nil {
		t.Fatal(err)
	}
	gb := &mdm.GetBootstrapToken{}
	gb.Raw.Raw = []byte("GETBOOTSTRAP-RAW")
	if _, err := d.GetBootstrapToken(r, gb); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{string(report), string(cmd.Raw), "TOKENUPDATE-RAW", "GETBOOTSTRAP-RAW", "<key>BootstrapToken</key>"} {
		if !strings.Contains(s, want) {
			t.Errorf("dump output lacks %q:\n%s", want, s)
		}
	}
	// The report comes before the command handed back.
	if strings.Index(s, string(report)) > strings.Index(s, "CMD-UUID-1") {
		t.Error("command dumped before the report that fetched it")
	}
}
