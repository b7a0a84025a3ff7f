package shared

import "testing"

func TestCandidateFieldsRoundTrip(t *testing.T) {
	uid := uint32(1000)
	c := Candidate{
		Rule:        Rule{ID: "r1", Action: ActionDeny, Lifetime: LifetimeForever, Enabled: true, Owner: 1000, Match: Match{Exe: "/usr/bin/curl", UID: &uid, Host: "*.example.org"}},
		Specificity: 42, HostMatched: "www.example.org", LostBy: "specificity",
	}
	got, err := CandidateFromFields(c.Fields())
	if err != nil {
		t.Fatal(err)
	}
	if got.Rule.ID != "r1" || got.Rule.Match.Exe != "/usr/bin/curl" || *got.Rule.Match.UID != 1000 ||
		got.Specificity != 42 || got.HostMatched != "www.example.org" || got.LostBy != "specificity" {
		t.Errorf("round trip: %+v", got)
	}
	if _, err := CandidateFromFields(map[string]any{"rule": "nope"}); err == nil {
		t.Error("a rule that is not a field map decoded")
	}
}
