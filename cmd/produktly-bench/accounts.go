package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
)

// benchAccount is one Produktly account of the accounts-mode workload.
type benchAccount struct {
	id, writeKey, region string
}

// benchAccounts are n active accounts; every third is in the EU region.
func benchAccounts(n int) []benchAccount {
	out := make([]benchAccount, n)
	for i := range out {
		out[i] = benchAccount{id: fmt.Sprintf("acct-%04d", i), writeKey: fmt.Sprintf("bench-key-%04d", i), region: "us"}
		if i%3 == 2 {
			out[i].region = "eu"
		}
	}
	return out
}

// writeIntegrations writes the accounts as an INTEGRATIONS_FILE: one
// object mapping account id to integration object.
func writeIntegrations(path string, accounts []benchAccount) error {
	type integration struct {
		WriteKey string `json:"writeKey"`
		Region   string `json:"region"`
		Active   bool   `json:"active"`
	}
	m := make(map[string]integration, len(accounts))
	for _, a := range accounts {
		m[a.id] = integration{WriteKey: a.writeKey, Region: a.region, Active: true}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// zipf draws account ranks 0..n-1 with probability proportional to
// 1/(rank+1)^s (s = 1: the classic Zipf law, where the busiest of 1,000
// accounts has ~13 % of the records and the quietest ~0.013 %).
type zipf struct {
	cdf []float64
}

func newZipf(n int, s float64) *zipf {
	z := &zipf{cdf: make([]float64, n)}
	sum := 0.0
	for k := range n {
		sum += 1 / math.Pow(float64(k+1), s)
		z.cdf[k] = sum
	}
	for k := range z.cdf {
		z.cdf[k] /= sum
	}
	return z
}

func (z *zipf) draw(rng *rand.Rand) int {
	u := rng.Float64()
	return min(sort.SearchFloat64s(z.cdf, u), len(z.cdf)-1)
}
