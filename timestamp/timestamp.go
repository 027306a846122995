// Package timestamp holds the one text form of a time the service sends to
// Segment: RFC 3339 in UTC with exactly three fractional digits, as in
// 2026-11-29T10:00:07.890Z. Segment keeps milliseconds, and one fixed
// width keeps messages comparable and lets a request body's sentAt be
// written in place. mapping writes each call's timestamp with it, sink
// each request's sentAt.
package timestamp

import "time"

// Layout is the form as a time layout: time.Time.Format of a UTC time with
// it gives what Append appends.
const Layout = "2006-01-02T15:04:05.000Z07:00"

// Width is the length of every text Append appends.
const Width = len("2006-01-02T15:04:05.000Z")

// Append appends t in the package's form, in UTC. It does without the
// general layout interpreter of time.Time.AppendFormat, which was a tenth
// of the CPU time the service spent in mapping, and converts days to a
// civil date once instead of in time's separate Date and Clock. The year
// must lie in 0001–9999: mapping refuses timestamps outside, and a clock
// shows none.
func Append(b []byte, t time.Time) []byte {
	const secondsPerDay = 86400
	sec := t.Unix()
	days := sec / secondsPerDay
	if sec%secondsPerDay < 0 {
		days--
	}
	rem := int(sec - days*secondsPerDay)
	year, month, day := civil(days)
	ms := t.Nanosecond() / 1e6
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = appendTwo(b, month, '-')
	b = appendTwo(b, day, 'T')
	b = appendTwo(b, rem/3600, ':')
	b = appendTwo(b, rem/60%60, ':')
	b = appendTwo(b, rem%60, '.')
	return append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// civil returns the proleptic Gregorian date of a day counted from
// 1970-01-01 (H. Hinnant's days-to-civil algorithm, eras of 400 years).
func civil(days int64) (year, month, day int) {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097                                  // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365]
	mp := (5*doy + 2) / 153                                // [0, 11], from March
	day = int(doy - (153*mp+2)/5 + 1)
	month = int(mp + 3)
	if month > 12 {
		month -= 12
	}
	year = int(yoe + era*400)
	if month <= 2 {
		year++
	}
	return year, month, day
}

// appendTwo appends v as two digits, then sep.
func appendTwo(b []byte, v int, sep byte) []byte {
	return append(b, byte('0'+v/10), byte('0'+v%10), sep)
}
