package enroll_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/service/enroll"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/device"
)

const (
	topicA = "com.apple.mgmt.External.aaaaaaaa-0000-4000-8000-000000000000"
	topicB = "com.apple.mgmt.External.bbbbbbbb-0000-4000-8000-000000000000"
)

func storeWith(t *testing.T, topics ...string) *inmem.Store {
	t.Helper()
	s := inmem.New()
	for _, topic := range topics {
		c, k := storagetest.NewPushCert(topic)
		if err := s.StorePushCert(context.Background(), c, k); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func build(t *testing.T, b *enroll.Builder, req enroll.Request) *device.EnrollProfile {
	t.Helper()
	p, err := b.Profile(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := device.ParseProfile(p.Body)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func TestPublicURL(t *testing.T) {
	s := storeWith(t)
	for raw, ok := range map[string]bool{
		"https://mdm.example.com":       true,
		"https://mdm.example.com/base/": true,
		"http://127.0.0.1:9000":         true,
		"http://localhost:9000":         true,
		"http://[::1]:9000":             true,
		"http://mdm.example.com":        false,
		"ftp://mdm.example.com":         false,
		"https://":                      false,
		"mdm.example.com":               false,
		"https://mdm.example.com/?a=b":  false,
		"https://mdm.example.com/#frag": false,
	} {
		_, err := enroll.New(enroll.Config{PublicURL: raw}, s, false)
		if (err == nil) != ok {
			t.Errorf("%q: err %v, want ok=%v", raw, err, ok)
		}
	}
	if _, err := enroll.New(enroll.Config{PublicURL: "http://mdm.example.com"}, s, true); err != nil {
		t.Errorf("http with allowHTTP (-dev): %v", err)
	}
	b, err := enroll.New(enroll.Config{PublicURL: "https://mdm.example.com/base/"}, storeWith(t, topicA), false)
	if err != nil {
		t.Fatal(err)
	}
	if p := build(t, b, enroll.Request{}); p.ServerURL != "https://mdm.example.com/base/mdm" || p.SCEP.URL != "https://mdm.example.com/base/scep" {
		t.Errorf("URLs under a base path: %q, %q", p.ServerURL, p.SCEP.URL)
	}
}

func TestTopicChoice(t *testing.T) {
	ctx := context.Background()
	cfg := enroll.Config{PublicURL: "https://mdm.example.com", StaticChallenge: "c"}
	none, _ := enroll.New(cfg, storeWith(t), false)
	if _, err := none.Profile(ctx, enroll.Request{}); !errors.Is(err, enroll.ErrNoTopic) {
		t.Errorf("no push cert: %v", err)
	}
	two, _ := enroll.New(cfg, storeWith(t, topicA, topicB), false)
	if _, err := two.Profile(ctx, enroll.Request{}); !errors.Is(err, enroll.ErrManyTopics) {
		t.Errorf("two push certs: %v", err)
	}
	cfg.Topic = topicB
	chosen, _ := enroll.New(cfg, storeWith(t, topicA, topicB), false)
	if p := build(t, chosen, enroll.Request{}); p.Topic != topicB {
		t.Errorf("-enroll-topic: %q", p.Topic)
	}
	cfg.Topic, cfg.FallbackTopic = "", topicA
	fallback, _ := enroll.New(cfg, storeWith(t), false)
	if p := build(t, fallback, enroll.Request{}); p.Topic != topicA {
		t.Errorf("fallback topic: %q", p.Topic)
	}
}

func TestParamsAndChallenges(t *testing.T) {
	s := storeWith(t, topicA)
	b, _ := enroll.New(enroll.Config{PublicURL: "https://mdm.example.com", StaticChallenge: "static", Checkin: true}, s, false)
	p := build(t, b, enroll.Request{Params: url.Values{"group": {"staff"}, "site": {"paris & co"}}})
	for _, u := range []string{p.ServerURL, p.CheckInURL} {
		parsed, err := url.Parse(u)
		if err != nil || parsed.Query().Get("group") != "staff" || parsed.Query().Get("site") != "paris & co" {
			t.Errorf("URL %q lacks the parameters", u)
		}
	}
	if strings.Contains(p.SCEP.URL, "group") {
		t.Errorf("SCEP URL %q carries the parameters", p.SCEP.URL)
	}
	if p.SCEP.Challenge != "static" {
		t.Errorf("static challenge: %q", p.SCEP.Challenge)
	}
	if p := build(t, b, enroll.Request{Challenge: "given"}); p.SCEP.Challenge != "given" {
		t.Errorf("given challenge: %q", p.SCEP.Challenge)
	}
	minted, err := b.Profile(context.Background(), enroll.Request{OneTime: true, Note: "api"})
	if err != nil || minted.Challenge == nil || minted.Challenge.Note != "api" {
		t.Fatalf("OneTime: %+v, %v", minted, err)
	}
	ep, _ := device.ParseProfile(minted.Body)
	if ep.SCEP.Challenge == "static" || ep.SCEP.Challenge == "" {
		t.Errorf("OneTime profile carries %q", ep.SCEP.Challenge)
	}
	tooMany := url.Values{}
	for i := range enroll.MaxParams + 1 {
		tooMany.Add("k", string(rune('a'+i%26)))
	}
	for name, params := range map[string]url.Values{
		"too many":  tooMany,
		"too long":  {"k": {strings.Repeat("x", enroll.MaxParamsBytes)}},
		"empty key": {"": {"v"}},
	} {
		if _, err := b.Profile(context.Background(), enroll.Request{Params: params}); !errors.Is(err, enroll.ErrBadParams) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSignedProfile(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Profile Signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	b, _ := enroll.New(enroll.Config{PublicURL: "https://mdm.example.com", StaticChallenge: "c", SignCert: cert, SignKey: key}, storeWith(t, topicA), false)
	if p := build(t, b, enroll.Request{}); !p.Signed || p.Topic != topicA {
		t.Errorf("signed %v, topic %q", p.Signed, p.Topic)
	}
}
