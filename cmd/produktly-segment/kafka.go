package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// kafkaConn builds the dialer (consumer group, readers) and the transport
// (writers, admin requests) with the same TLS and SASL settings.
func kafkaConn(c *config) (*kafka.Dialer, *kafka.Transport, error) {
	var mech sasl.Mechanism
	switch c.SASLMechanism {
	case "":
	case "PLAIN":
		mech = plain.Mechanism{Username: c.SASLUsername, Password: c.SASLPassword}
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if c.SASLMechanism == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.SASLUsername, c.SASLPassword)
		if err != nil {
			return nil, nil, &configError{Name: "KAFKA_SASL_MECHANISM", Err: errors.New("scram setup failed")}
		}
		mech = m
	}
	var tlsConf *tls.Config
	if c.TLS {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return nil, nil, &configError{Name: "KAFKA_TLS_CA_FILE", Err: err}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, &configError{Name: "KAFKA_TLS_CA_FILE", Err: fmt.Errorf("no PEM certificate in %s", c.TLSCAFile)}
			}
			tlsConf.RootCAs = pool
		}
		if c.TLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
			if err != nil {
				return nil, nil, &configError{Name: "KAFKA_TLS_CERT_FILE", Err: err}
			}
			tlsConf.Certificates = []tls.Certificate{cert}
		}
	}
	dialer := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: tlsConf, SASLMechanism: mech}
	transport := &kafka.Transport{DialTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, TLS: tlsConf, SASL: mech}
	return dialer, transport, nil
}
