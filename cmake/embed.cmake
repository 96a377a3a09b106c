# Turns a file into a C array at configure time, so the binary serves the
# canvas page without reading any file at run time:
#   embed_file(<input> <output.c> <symbol>)
function(embed_file input output symbol)
    file(READ ${input} hex HEX)
    string(LENGTH "${hex}" hex_len)
    math(EXPR size "${hex_len} / 2")
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
    file(WRITE ${output}
        "/* Generated from ${input} by cmake/embed.cmake; do not edit. */\n"
        "#include <stddef.h>\n"
        "const unsigned char ${symbol}[] = {${bytes}0x00};\n"
        "const size_t ${symbol}_len = ${size};\n")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${input})
endfunction()
