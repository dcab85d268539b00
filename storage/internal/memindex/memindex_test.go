package memindex

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// TestPaginate: pages hold at most limit results, skip what build leaves
// out, and carry the cursor of their last result exactly when more follow.
func TestPaginate(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	skipC := func(id string) (string, bool, error) { return id, id != "c", nil }
	key := func(id *string) string { return *id }
	for _, tc := range []struct {
		limit    int
		want     []string
		wantNext string
	}{
		{1, []string{"a"}, "a"},
		{2, []string{"a", "b"}, "b"},
		{3, []string{"a", "b", "d"}, "d"},
		{4, []string{"a", "b", "d", "e"}, ""},
		{10, []string{"a", "b", "d", "e"}, ""},
	} {
		got, next, err := Paginate(ids, tc.limit, skipC, key)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("limit %d: %v, %v; want %v", tc.limit, got, err, tc.want)
		}
		want := ""
		if tc.wantNext != "" {
			want = storage.EncodeCursor(tc.wantNext)
		}
		if next != want {
			t.Errorf("limit %d: next %q, want %q", tc.limit, next, want)
		}
	}
	if got, next, err := Paginate(nil, 5, skipC, key); got == nil || len(got) != 0 || next != "" || err != nil {
		t.Errorf("no candidates: %#v, %q, %v; want an empty page", got, next, err)
	}
	boom := errors.New("boom")
	if _, _, err := Paginate(ids, 5, func(string) (string, bool, error) { return "", false, boom }, key); !errors.Is(err, boom) {
		t.Errorf("build error: %v", err)
	}
}

// TestListingCandidates: a device filter considers the device and its user
// channels only; SortedAfter orders and resumes after the cursor's ID.
func TestListingCandidates(t *testing.T) {
	all := map[string]*Channel{}
	children := Children{}
	for _, c := range []*Channel{
		{ID: "D1", Type: mdm.Device},
		{ID: "U1", ParentID: "D1", Type: mdm.User},
		{ID: "U0", ParentID: "D1", Type: mdm.User},
		{ID: "D2", Type: mdm.Device},
	} {
		all[c.ID] = c
		children.Add(c)
	}
	f := &storage.EnrollmentFilter{DeviceID: "D1"}
	if got := SortedAfter(Candidates(all, children, f), "", nil); !slices.Equal(got, []string{"D1", "U0", "U1"}) {
		t.Errorf("device D1: %v", got)
	}
	if got := SortedAfter(Candidates(all, children, &storage.EnrollmentFilter{}), "D2", nil); !slices.Equal(got, []string{"U0", "U1"}) {
		t.Errorf("all after D2: %v", got)
	}
	users := func(id string) bool { return all[id].Type == mdm.User }
	if got := SortedAfter(maps.Keys(all), "", users); !slices.Equal(got, []string{"U0", "U1"}) {
		t.Errorf("users: %v", got)
	}
}

// TestChannelFilters: Matches answers the filters on the channel,
// MatchesInfo those on the info (bounds are exclusive).
func TestChannelFilters(t *testing.T) {
	c := &Channel{ID: "U", ParentID: "D", Type: mdm.User, Enabled: true, Push: mdm.Push{Topic: "t"}}
	no := false
	for i, f := range []storage.EnrollmentFilter{
		{}, {Type: mdm.User}, {Topic: "t"}, {DeviceID: "D"}, {DeviceID: "U"},
	} {
		if !c.Matches(&f) {
			t.Errorf("filter %d: %+v does not match", i, f)
		}
	}
	for i, f := range []storage.EnrollmentFilter{
		{Type: mdm.Device}, {Enabled: &no}, {Topic: "other"}, {DeviceID: "X"},
	} {
		if c.Matches(&f) {
			t.Errorf("filter %d: %+v matches", i, f)
		}
	}
	seen := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	info := &storage.EnrollmentInfo{SerialNumber: "S", LastSeenAt: seen}
	for _, tc := range []struct {
		f    storage.EnrollmentFilter
		want bool
	}{
		{storage.EnrollmentFilter{Serial: "S"}, true},
		{storage.EnrollmentFilter{Serial: "T"}, false},
		{storage.EnrollmentFilter{SeenBefore: seen.Add(time.Second)}, true},
		{storage.EnrollmentFilter{SeenBefore: seen}, false},
		{storage.EnrollmentFilter{SeenAfter: seen.Add(-time.Second)}, true},
		{storage.EnrollmentFilter{SeenAfter: seen}, false},
	} {
		if got := MatchesInfo(info, &tc.f); got != tc.want {
			t.Errorf("%+v: MatchesInfo = %v, want %v", tc.f, got, tc.want)
		}
	}
}

// TestPushInfos: only enabled channels with a token are pushed to, and
// the result does not share the index's token.
func TestPushInfos(t *testing.T) {
	all := map[string]*Channel{
		"A": {ID: "A", Enabled: true, Push: mdm.Push{Token: []byte{1}, Topic: "t"}},
		"B": {ID: "B", Enabled: false, Push: mdm.Push{Token: []byte{2}, Topic: "t"}},
		"C": {ID: "C", Enabled: true},
	}
	got := PushInfos([]string{"A", "B", "C", "unknown"}, func(id string) *Channel { return all[id] })
	if len(got) != 1 || got["A"] == nil || got["A"].Topic != "t" {
		t.Fatalf("push infos: %v", got)
	}
	got["A"].Token[0] = 9
	if all["A"].Push.Token[0] != 1 {
		t.Error("the push info shares the index's token")
	}
	if _, err := PushTokenValid("unknown", nil); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PushTokenValid of an unknown channel: %v", err)
	}
	all["A"].PushTokenInvalidAt = time.Now()
	if ok, err := PushTokenValid("A", all["A"]); ok || err != nil {
		t.Errorf("PushTokenValid after invalidation: %v, %v", ok, err)
	}
}

// TestPending: Insert keeps Seq order, and a NotNow defers the command and
// shows in its queue entry and state.
func TestPending(t *testing.T) {
	var q []*Pending
	for _, seq := range []uint64{1, 3, 2, 5, 4} {
		q = Insert(q, &Pending{Seq: seq, CommandUUID: strconv.FormatUint(seq, 10)})
	}
	for i, p := range q {
		if p.Seq != uint64(i+1) {
			t.Fatalf("queue out of order: %d at %d", p.Seq, i)
		}
	}
	p := q[Find(q, "3")]
	if st := p.State("A", time.Time{}); st.State != "pending" {
		t.Errorf("state before NotNow: %q", st.State)
	}
	first, second := time.Unix(100, 0), time.Unix(200, 0)
	p.CountNotNow(first)
	p.CountNotNow(second)
	if !p.Deferred || p.NotNow != 2 || !p.FirstNotNow.Equal(first) || !p.LastNotNow.Equal(second) {
		t.Errorf("after two NotNows: %+v", p)
	}
	if qc := p.Queued("ProfileList", first); qc.Status != mdm.StatusNotNow || qc.NotNowCount != 2 || qc.RequestType != "ProfileList" {
		t.Errorf("queued: %+v", qc)
	}
	if st := p.State("A", first); st.State != mdm.StatusNotNow || st.NotNowCount != 2 {
		t.Errorf("state: %+v", st)
	}
	if Find(q, "6") != -1 {
		t.Error("Find found a command never queued")
	}
}
