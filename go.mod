module github.com/picomdm/picomdm

go 1.26.0

require (
	github.com/micromdm/plist v0.2.2
	github.com/smallstep/pkcs7 v0.2.3
	gopkg.in/yaml.v3 v3.0.1
)
