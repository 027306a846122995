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
	// Written into an array and appended whole: one copy instead of a
	// capacity check per byte.
	w := [Width]byte{4: '-', 7: '-', 10: 'T', 13: ':', 16: ':', 19: '.', 23: 'Z'}
	putTwo(w[0:], year/100)
	putTwo(w[2:], year%100)
	putTwo(w[5:], month)
	putTwo(w[8:], day)
	putTwo(w[11:], rem/3600)
	putTwo(w[14:], rem/60%60)
	putTwo(w[17:], rem%60)
	w[20], w[21], w[22] = byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10)
	return append(b, w[:]...)
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

// putTwo writes v (0–99) as two digits at the start of w.
func putTwo(w []byte, v int) {
	w[0], w[1] = digits[2*v], digits[2*v+1]
}

// digits holds 00 to 99, two bytes each.
const digits = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"
