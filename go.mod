module github.com/picomdm/picomdm

go 1.26.0

require (
	github.com/go-sql-driver/mysql v1.10.1
	github.com/lib/pq v1.12.3
	github.com/micromdm/plist v0.2.2
	github.com/smallstep/pkcs7 v0.2.3
	golang.org/x/net v0.62.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
